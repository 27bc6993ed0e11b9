"""The local stack: Tansu, an SMTP sink, and each service's migrations, API and worker.

`make run` uses it on the fixed local ports; the end-to-end tests start the same stack on free
ports in a temporary folder, so what the tests exercise is what a developer runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from odr_shared.testing import free_port, tansu_binary, wait_http, wait_port

# name -> (python package, local port)
SERVICES: dict[str, tuple[str, int]] = {
    "gateway": ("gateway", 8001),
    "complaints": ("complaints", 8002),
    "mediation": ("mediation", 8003),
    "notifications": ("notifications", 8004),
}


@dataclass
class Ports:
    kafka: int = 9092
    smtp: int = 1025
    sms: int = 1026
    services: dict[str, int] = field(
        default_factory=lambda: {name: port for name, (_pkg, port) in SERVICES.items()}
    )

    @classmethod
    def from_env(cls) -> Ports:
        """Local defaults, each overridable (ODR_KAFKA_PORT, ODR_GATEWAY_PORT, ...)."""
        d = cls()
        env = os.environ
        return cls(
            kafka=int(env.get("ODR_KAFKA_PORT", d.kafka)),
            smtp=int(env.get("ODR_SMTP_PORT", d.smtp)),
            sms=int(env.get("ODR_SMS_PORT", d.sms)),
            services={
                name: int(env.get(f"ODR_{name.upper()}_PORT", port))
                for name, port in d.services.items()
            },
        )

    @classmethod
    def free(cls) -> Ports:
        return cls(
            kafka=free_port(),
            smtp=free_port(),
            sms=free_port(),
            services={name: free_port() for name in SERVICES},
        )


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes] | None = None


class Stack:
    """Start and stop the whole platform as child processes."""

    def __init__(
        self,
        var: Path,
        ports: Ports | None = None,
        *,
        echo: IO[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.var = var.resolve()
        self.ports = ports or Ports()
        self.echo = echo
        self.extra_env = extra_env or {}
        self.procs: dict[str, Proc] = {}
        self.env = self._env()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports.services[service]}"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("ENVIRONMENT", "development")
        env.setdefault("LOG_FORMAT", "text")
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap
        for name in SERVICES:
            env[f"{name.upper()}_DATABASE_URL"] = f"sqlite:///{self.var}/{name}.db"
            env[f"{name.upper()}_PUBLIC_BASE_URL"] = self.url(name)
        env["GATEWAY_URL"] = self.url("gateway")
        env["COMPLAINTS_URL"] = self.url("complaints")
        env["MEDIATION_URL"] = self.url("mediation")
        env["NOTIFICATIONS_URL"] = self.url("notifications")
        env["NOTIFICATIONS_SMTP_HOST"] = "127.0.0.1"
        env["NOTIFICATIONS_SMTP_PORT"] = str(self.ports.smtp)
        env["NOTIFICATIONS_SMS_SINK_PORT"] = str(self.ports.sms)
        env["NOTIFICATIONS_SMS_PROVIDER_URL"] = f"http://127.0.0.1:{self.ports.sms}/sms"
        env["MEDIATION_COMPLAINTS_URL"] = self.url("complaints")
        env["NOTIFICATIONS_SMS_SINK_DIR"] = str(self.var / "sms")
        env["NOTIFICATIONS_DASHBOARD_URL"] = f"{self.url('mediation')}/dashboard"
        # A local run or a test may happen at any hour: no night hold of non-urgent messages
        # unless asked for (production keeps its 21:00-07:00 default).
        env.setdefault("NOTIFICATIONS_QUIET_HOURS_START", "00:00")
        env.setdefault("NOTIFICATIONS_QUIET_HOURS_END", "00:00")
        env["COMPLAINTS_STORAGE_DIR"] = str(self.var / "evidence")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def _argv(self) -> list[Proc]:
        py = sys.executable
        kafka_url = f"tcp://127.0.0.1:{self.ports.kafka}"
        procs = [
            Proc(
                "tansu",
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    kafka_url,
                    "--advertised-listener-url",
                    kafka_url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
            ),
            Proc(
                "smtp-sink",
                [
                    py,
                    "-m",
                    "odr_cli.smtp_sink",
                    "--port",
                    str(self.ports.smtp),
                    "--dir",
                    str(self.var / "mail"),
                ],
            ),
            Proc(
                "sms-sink",
                [
                    py,
                    "-m",
                    "notifications.sms_sink",
                    "--port",
                    str(self.ports.sms),
                    "--dir",
                    str(self.var / "sms"),
                ],
            ),
        ]
        for name, (pkg, _port) in SERVICES.items():
            port = self.ports.services[name]
            procs.append(
                Proc(
                    f"{name}-api",
                    [py, "-c", f"from {pkg}.main import api; api()", "--port", str(port)],
                )
            )
            procs.append(
                Proc(f"{name}-worker", [py, "-c", f"from {pkg}.main import worker; worker()"])
            )
        return procs

    def migrate(self) -> None:
        for pkg, _port in SERVICES.values():
            subprocess.run(
                [sys.executable, "-c", f"from {pkg}.main import migrate; migrate()"],
                env=self.env,
                check=True,
            )

    def start_process(self, proc: Proc) -> None:
        logf = open(self.var / "logs" / f"{proc.name}.log", "ab")  # noqa: SIM115 - closed by the pump
        proc.popen = subprocess.Popen(
            proc.argv,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert proc.popen.stdout is not None
        threading.Thread(
            target=_pump, args=(proc.name, proc.popen.stdout, self.echo, logf), daemon=True
        ).start()
        self.procs[proc.name] = proc

    def start(self, timeout_s: float = 90) -> Stack:
        (self.var / "logs").mkdir(parents=True, exist_ok=True)
        self.migrate()
        for proc in self._argv():
            self.start_process(proc)
            if proc.name == "tansu":
                wait_port("127.0.0.1", self.ports.kafka)
        for name in SERVICES:
            wait_http(f"{self.url(name)}/readyz", timeout_s=timeout_s)
        return self

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        if proc.popen and proc.popen.poll() is None:
            os.killpg(proc.popen.pid, sig)
            proc.popen.wait(timeout=15)

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start_process(Proc(name, self.procs[name].argv))

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.popen and p.popen.poll() is not None]

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.popen and proc.popen.poll() is None:
                os.killpg(proc.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            if proc.popen:
                try:
                    proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                    proc.popen.wait()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pump(name: str, stream: IO[bytes], echo: IO[str] | None, logfile: IO[bytes]) -> None:
    with logfile:
        for line in iter(stream.readline, b""):
            logfile.write(line)
            logfile.flush()
            if echo is not None:
                echo.write(f"{name:<22}| {line.decode(errors='replace')}")
                echo.flush()


BANNER = """
ODR platform is up:
  marketplace gateway  {gateway}   (API docs: {gateway}/docs)
  complaints + portal  {complaints}/
  mediation dashboard  {mediation}/dashboard
  notifications        {notifications}/v1/deliveries
  Kafka (Tansu)        127.0.0.1:{kafka}
  SMTP sink            127.0.0.1:{smtp} (mail saved under {var}/mail)
  SMS sink             http://127.0.0.1:{sms}/sms (messages saved under {var}/sms)
  admin token          .venv/bin/odr token --role admin
Ctrl-C stops everything.
"""


def run_stack(var_dir: str = "var", reset: bool = False) -> int:
    var = Path(var_dir)
    if reset and var.exists():
        shutil.rmtree(var)
    stack = Stack(var, Ports.from_env(), echo=sys.stdout)
    stopping = threading.Event()
    handler: Callable[..., None] = lambda *_: stopping.set()  # noqa: E731
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    print("odr: migrating databases and starting the platform ...", flush=True)
    try:
        stack.start()
        print(
            BANNER.format(
                **{n: stack.url(n) for n in SERVICES},
                kafka=stack.ports.kafka,
                smtp=stack.ports.smtp,
                sms=stack.ports.sms,
                var=var,
            ),
            flush=True,
        )
        while not stopping.is_set():
            dead = stack.dead()
            if dead:
                print(f"odr: {', '.join(dead)} exited; stopping", flush=True)
                return 1
            stopping.wait(0.5)
    finally:
        stack.stop()
        print("odr: stopped", flush=True)
    return 0
