"""`odr stack` (what `make run` runs): brings the platform up, prints the URLs, Ctrl-C stops all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from odr_shared.testing import free_port

pytestmark = pytest.mark.e2e


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_stack_starts_everything_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    names = ["KAFKA", "SMTP", "SMS", "GATEWAY", "COMPLAINTS", "MEDIATION", "NOTIFICATIONS"]
    ports = {n: free_port() for n in names}
    env = dict(os.environ, **{f"ODR_{n}_PORT": str(p) for n, p in ports.items()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "odr_cli.main", "stack", "--var", str(tmp_path / "var")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    banner: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            banner.append(line)
            if "Ctrl-C stops everything" in line:
                break
        text = "".join(banner)
        assert "ODR platform is up" in text, text[-3000:]
        for service in ("GATEWAY", "COMPLAINTS", "MEDIATION", "NOTIFICATIONS"):
            url = f"http://127.0.0.1:{ports[service]}"
            assert url in text
            assert httpx.get(f"{url}/readyz").status_code == 200
        assert (tmp_path / "var" / "complaints.db").exists()
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[0]
        assert "odr: stopped" in rest
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.5)
    still_open = [n for n, p in ports.items() if n != "SMTP" and port_open(p)]
    assert still_open == [], f"still listening after Ctrl-C: {still_open}"
    assert not port_open(ports["SMTP"])
