"""The local stack: Tansu, an SMTP sink, and each service's migrations, API and worker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from odr_shared.testing import tansu_binary, wait_http, wait_port

SERVICES = {
    # name: (package, port)
    "gateway": ("gateway", 8001),
    "complaints": ("complaints", 8002),
    "mediation": ("mediation", 8003),
    "notifications": ("notifications", 8004),
}
KAFKA_PORT = int(os.environ.get("ODR_KAFKA_PORT", "9092"))
SMTP_PORT = int(os.environ.get("ODR_SMTP_PORT", "1025"))


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None


def stack_env(var: Path) -> dict[str, str]:
    """Environment for every process of the local stack (development defaults)."""
    env = dict(os.environ)
    env.setdefault("ENVIRONMENT", "development")
    env.setdefault("LOG_FORMAT", "text")
    env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{KAFKA_PORT}"
    for name in SERVICES:
        env.setdefault(f"{name.upper()}_DATABASE_URL", f"sqlite:///{var.resolve()}/{name}.db")
    env.setdefault("NOTIFICATIONS_SMTP_HOST", "127.0.0.1")
    env.setdefault("NOTIFICATIONS_SMTP_PORT", str(SMTP_PORT))
    env.setdefault("COMPLAINTS_STORAGE_DIR", str((var / "evidence").resolve()))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _pump(name: str, stream: IO[bytes], sink: IO[str], logfile: IO[bytes]) -> None:
    for line in iter(stream.readline, b""):
        logfile.write(line)
        logfile.flush()
        sink.write(f"{name:<22}| {line.decode(errors='replace')}")
        sink.flush()


def run_stack(var_dir: str = "var", reset: bool = False) -> int:
    var = Path(var_dir)
    if reset and var.exists():
        shutil.rmtree(var)
    (var / "logs").mkdir(parents=True, exist_ok=True)
    env = stack_env(var)
    py = sys.executable
    procs: list[Proc] = [
        Proc(
            "tansu",
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{KAFKA_PORT}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{KAFKA_PORT}",
                "--storage-engine",
                "memory://tansu/",
            ],
        ),
        Proc(
            "smtp-sink",
            [py, "-m", "odr_cli.smtp_sink", "--port", str(SMTP_PORT), "--dir", str(var / "mail")],
        ),
    ]
    for name, (pkg, port) in SERVICES.items():
        procs.append(
            Proc(
                f"{name}-api", [py, "-c", f"from {pkg}.main import api; api()", "--port", str(port)]
            )
        )
        procs.append(Proc(f"{name}-worker", [py, "-c", f"from {pkg}.main import worker; worker()"]))

    stopping = threading.Event()

    def _stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    print("odr: migrating databases ...", flush=True)
    for pkg, _port in SERVICES.values():
        subprocess.run(
            [py, "-c", f"from {pkg}.main import migrate; migrate()"], env=env, check=True
        )

    try:
        for proc in procs:
            logf = open(var / "logs" / f"{proc.name}.log", "ab")  # noqa: SIM115
            proc.popen = subprocess.Popen(
                proc.argv,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            assert proc.popen.stdout is not None
            threading.Thread(
                target=_pump, args=(proc.name, proc.popen.stdout, sys.stdout, logf), daemon=True
            ).start()
            if proc.name == "tansu":
                wait_port("127.0.0.1", KAFKA_PORT)
        for _name, (_pkg, port) in SERVICES.items():
            wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
        print(
            "\nODR platform is up:\n"
            "  marketplace gateway  http://127.0.0.1:8001   (API docs: /docs)\n"
            "  complaints + portal  http://127.0.0.1:8002/\n"
            "  mediation dashboard  http://127.0.0.1:8003/dashboard\n"
            "  notifications        http://127.0.0.1:8004/v1/deliveries\n"
            f"  Kafka (Tansu)        127.0.0.1:{KAFKA_PORT}\n"
            f"  SMTP sink            127.0.0.1:{SMTP_PORT} (mail saved under {var}/mail)\n"
            "  admin token          .venv/bin/odr token --role admin\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping.is_set():
            for proc in procs:
                if proc.popen and proc.popen.poll() is not None:
                    print(f"odr: {proc.name} exited with {proc.popen.returncode}", flush=True)
                    stopping.set()
            stopping.wait(0.5)
    finally:
        for proc in reversed(procs):
            if proc.popen and proc.popen.poll() is None:
                os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs:
            if proc.popen:
                try:
                    proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.popen.pid, signal.SIGKILL)
        print("odr: stopped", flush=True)
    return 0
