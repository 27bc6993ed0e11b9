"""The local stack: Tansu, an SMTP sink, and each service's migrations, API and worker.

`make run` uses it on the fixed local ports; the end-to-end tests start the same stack on free
ports in a temporary folder, so what the tests exercise is what a developer runs. Each service
keeps its data in a SQLite file under the stack's folder, or (ODR_DATABASE=postgres) in its own
database on a PostgreSQL server, created when missing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from odr_shared.testing import (
    create_postgres_database,
    drop_postgres_database,
    free_port,
    postgres_database_url,
    tansu_binary,
    wait_http,
    wait_port,
)

# name -> (python package, local port)
SERVICES: dict[str, tuple[str, int]] = {
    "gateway": ("gateway", 8001),
    "complaints": ("complaints", 8002),
    "mediation": ("mediation", 8003),
    "notifications": ("notifications", 8004),
}

# Where the services keep their data (ODR_DATABASE): a SQLite file each, or a PostgreSQL
# database each on the server ODR_POSTGRES_URL names (its admin URL: the stack creates the
# databases through it).
DATABASES = ("sqlite", "postgres")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# The stack's own databases are `<prefix>_<service>`: lower case, so psql and SQL name them
# the same way unquoted, and nothing in a prefix can close the quotes around a name.
_DATABASE_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,40}")


class StackError(Exception):
    """The stack cannot start as configured; the message says why, for the operator."""


def database_kind(value: str, *, named: str = "ODR_DATABASE") -> str:
    """`sqlite` (also for an empty value) or `postgres` (`postgresql` is taken for it too)."""
    kind = value.strip().lower() or "sqlite"
    kind = "postgres" if kind == "postgresql" else kind
    if kind not in DATABASES:
        raise StackError(
            f"{named}={value!r} is not a database the stack knows: use sqlite or postgres"
        )
    return kind


def database_from_env(env: Mapping[str, str] | None = None) -> str:
    """ODR_DATABASE, sqlite by default."""
    return database_kind((os.environ if env is None else env).get("ODR_DATABASE", ""))


@dataclass
class Ports:
    kafka: int = 9092
    smtp: int = 1025
    sms: int = 1026
    services: dict[str, int] = field(
        default_factory=lambda: {name: port for name, (_pkg, port) in SERVICES.items()}
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Ports:
        """Local defaults, each overridable (ODR_KAFKA_PORT, ODR_GATEWAY_PORT, ...)."""
        d = cls()
        env = os.environ if env is None else env
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
    """Start and stop the whole platform as child processes.

    `database` is where the services keep their data: `sqlite` (a file each under `var`) or
    `postgres` (a database each, `<database_prefix>_<service>`, created through the admin URL
    `postgres_url` when missing; kept, or with `drop_databases` dropped when the stack stops).
    A service's URL in `database_urls` (or `extra_env`) is used as it is: the stack neither
    creates nor drops that database.

    `broker_port`, when given, is where Tansu listens; it still advertises `ports.kafka`, where
    the caller runs something in between (a benchmark's cuttable link), so every service
    process reaches the broker through that port. The caller starts it before `start()`.
    """

    def __init__(
        self,
        var: Path,
        ports: Ports | None = None,
        *,
        database: str = "sqlite",
        postgres_url: str = DEFAULT_POSTGRES_URL,
        database_prefix: str = "odr",
        drop_databases: bool = False,
        database_urls: Mapping[str, str] | None = None,
        echo: IO[str] | None = None,
        extra_env: dict[str, str] | None = None,
        broker_port: int | None = None,
    ) -> None:
        self.var = var.resolve()
        self.ports = ports or Ports()
        self.broker_port = broker_port
        self.database = database_kind(database, named="database")
        self.postgres_url = postgres_url
        self.drop_databases = drop_databases
        self.echo = echo
        self.extra_env = extra_env or {}
        self.procs: dict[str, Proc] = {}
        given = self._given_urls(database_urls or {})
        # service -> the PostgreSQL database the stack creates for it (none on SQLite)
        self.owned_databases = self._owned_databases(database_prefix, given)
        self._database_urls = self._urls(given)
        self._created: list[str] = []
        self.env = self._env()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports.services[service]}"

    def database_url(self, service: str) -> str:
        """The SQLAlchemy URL of `service`'s database, for a test or a benchmark to query."""
        return self._database_urls[service]

    def _given_urls(self, database_urls: Mapping[str, str]) -> dict[str, str]:
        unknown = set(database_urls) - set(SERVICES)
        if unknown:
            raise StackError(f"database URLs for unknown services: {sorted(unknown)}")
        given = dict(database_urls)
        for name in SERVICES:
            from_extra = self.extra_env.get(f"{name.upper()}_DATABASE_URL")
            if from_extra:
                given[name] = from_extra
        return given

    def _owned_databases(self, prefix: str, given: Mapping[str, str]) -> dict[str, str]:
        if self.database != "postgres":
            return {}
        if not _DATABASE_PREFIX.fullmatch(prefix):
            raise StackError(
                f"database prefix {prefix!r}: lower-case letters, digits and _ only (at most 41)"
            )
        return {name: f"{prefix}_{name}" for name in SERVICES if name not in given}

    def _urls(self, given: Mapping[str, str]) -> dict[str, str]:
        urls = dict(given)
        for name in SERVICES:
            if name in urls:
                continue
            if name in self.owned_databases:
                urls[name] = postgres_database_url(self.postgres_url, self.owned_databases[name])
            else:
                urls[name] = f"sqlite:///{self.var}/{name}.db"
        return urls

    def prepare_databases(self) -> list[str]:
        """Create the stack's PostgreSQL databases that do not exist yet; returns their names.
        An existing one is kept as it is (migrations bring it up to date)."""
        created = []
        with self._server("create the stack's databases"):
            for name in self.owned_databases.values():
                if create_postgres_database(self.postgres_url, name):
                    created.append(name)
                    self._created.append(name)  # at once: a later failure still drops it
        return created

    def reset_databases(self) -> None:
        """Drop the stack's own PostgreSQL databases (`--reset`); given URLs are left alone."""
        with self._server("drop the stack's databases"):
            for name in self.owned_databases.values():
                drop_postgres_database(self.postgres_url, name)

    @contextmanager
    def _server(self, doing: str) -> Iterator[None]:
        # A server that is down or refuses us is the operator's to fix: say which and where.
        try:
            yield
        except OperationalError as exc:
            where = make_url(self.postgres_url).render_as_string(hide_password=True)
            raise StackError(
                f"cannot {doing} on PostgreSQL at {where} (ODR_POSTGRES_URL): {exc.orig or exc}"
            ) from exc

    def _drop_created_databases(self) -> None:
        # Only what this stack created: a database that was there before is never dropped.
        while self._created:
            drop_postgres_database(self.postgres_url, self._created.pop())

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    @property
    def listen_port(self) -> int:
        """Where Tansu itself listens: `broker_port`, or the advertised `ports.kafka`."""
        return self.broker_port or self.ports.kafka

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("ENVIRONMENT", "development")
        env.setdefault("LOG_FORMAT", "text")
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap
        for name in SERVICES:
            env[f"{name.upper()}_DATABASE_URL"] = self.database_url(name)
            env[f"{name.upper()}_PUBLIC_BASE_URL"] = self.url(name)
        env["GATEWAY_URL"] = self.url("gateway")
        env["COMPLAINTS_URL"] = self.url("complaints")
        env["MEDIATION_URL"] = self.url("mediation")
        env["NOTIFICATIONS_URL"] = self.url("notifications")
        # Service-to-service calls (subject keys, data-subject exports).
        env["SERVICE_URLS"] = ",".join(f"{name}={self.url(name)}" for name in SERVICES)
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
        listen_url = f"tcp://127.0.0.1:{self.listen_port}"
        procs = [
            Proc(
                "tansu",
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    listen_url,
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
        self.prepare_databases()
        self.migrate()
        for proc in self._argv():
            self.start_process(proc)
            if proc.name == "tansu":
                wait_port("127.0.0.1", self.listen_port)
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
        if self.drop_databases:
            self._drop_created_databases()

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
  databases            {databases}
  admin token          .venv/bin/odr token --role admin
Ctrl-C stops everything.
"""


def stack_from_env(
    var: Path, env: Mapping[str, str] | None = None, *, echo: IO[str] | None = None
) -> Stack:
    """The stack `make run` starts: ports, ODR_DATABASE and ODR_POSTGRES_URL from the
    environment, where a `<SERVICE>_DATABASE_URL` already set wins for that service."""
    env = os.environ if env is None else env
    given = {
        name: env[f"{name.upper()}_DATABASE_URL"]
        for name in SERVICES
        if env.get(f"{name.upper()}_DATABASE_URL")
    }
    return Stack(
        var,
        Ports.from_env(env),
        database=database_from_env(env),
        postgres_url=env.get("ODR_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        database_urls=given,
        echo=echo,
    )


def describe_databases(stack: Stack) -> str:
    """One line per service: where its data is (passwords hidden)."""
    pad = "\n" + " " * 23
    return pad.join(
        f"{name:<14}{make_url(stack.database_url(name)).render_as_string(hide_password=True)}"
        for name in SERVICES
    )


def run_stack(var_dir: str = "var", reset: bool = False) -> int:
    var = Path(var_dir)
    try:
        stack = stack_from_env(var, echo=sys.stdout)
        if reset:
            stack.reset_databases()
    except StackError as exc:
        print(f"odr: {exc}", file=sys.stderr, flush=True)
        return 2
    if reset and var.exists():
        shutil.rmtree(var)
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
                databases=describe_databases(stack),
            ),
            flush=True,
        )
        while not stopping.is_set():
            dead = stack.dead()
            if dead:
                print(f"odr: {', '.join(dead)} exited; stopping", flush=True)
                return 1
            stopping.wait(0.5)
    except StackError as exc:
        print(f"odr: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        stack.stop()
        print("odr: stopped", flush=True)
    return 0
