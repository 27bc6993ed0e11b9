"""Fuzzing: schemathesis against each service's OpenAPI, in process, on SQLite temp databases."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from reliability_kit import record, token
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from odr_shared.testing import TansuBroker

pytestmark = [pytest.mark.reliability, pytest.mark.kafka]

SERVICES = {
    "gateway": "GATEWAY",
    "complaints": "COMPLAINTS",
    "notifications": "NOTIFICATIONS",
    "mediation": "MEDIATION",
}
POSITIVE_EXAMPLES = 12
NEGATIVE_EXAMPLES = 5
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.response_schema_conformance,
    st_checks.content_type_conformance,
]
# Operations left out, and why.
EXCLUDED: dict[str, str] = {
    # Multipart uploads: the generated parts are not files; covered by the access matrix.
    "POST /v1/cases/{case_id}/evidence": "multipart upload (exercised by the access matrix)",
}


def build_app(service: str, folder: Path, bootstrap: str) -> Any:
    prefix = SERVICES[service]
    env = {
        f"{prefix}_DATABASE_URL": f"sqlite:///{folder}/{service}.db",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "ENVIRONMENT": "test",
        "COMPLAINTS_STORAGE_DIR": str(folder / "evidence"),
        "LOG_LEVEL": "ERROR",
    }
    subprocess.run(
        [sys.executable, "-c", f"from {service}.main import migrate; migrate()"],
        env={**os.environ, **env},
        check=True,
    )
    settings_mod = importlib.import_module(f"{service}.settings")
    settings_cls = next(
        v
        for k, v in vars(settings_mod).items()
        if k.endswith("Settings") and k != "ServiceSettings" and isinstance(v, type)
    )
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return importlib.import_module(f"{service}.app").create_app(settings_cls())
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_run(
    op: Any,
    mode: GenerationMode,
    examples: int,
    checks: list[Any],
    headers: dict[str, str],
    calls: dict[str, int],
) -> Any:
    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        calls[mode.value] += 1
        case.call_and_validate(headers=headers, checks=checks)

    return run


@pytest.mark.parametrize("service", list(SERVICES))
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    service: str, broker: TansuBroker, tmp_path: Path
) -> None:
    app = build_app(service, tmp_path, broker.bootstrap)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {token('admin', subject='fuzz')}"}
    calls = {"positive": 0, "negative": 0}
    failures: list[str] = []
    operations = 0
    unsatisfiable = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.label in EXCLUDED:
            continue
        operations += 1
        for mode, examples in (
            (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
        ):
            checks = CHECKS if mode is GenerationMode.POSITIVE else CHECKS[:1]

            run = make_run(op, mode, examples, checks, headers, calls)
            try:
                run()
            except Unsatisfiable:
                unsatisfiable += 1  # nothing to make invalid (no parameters, no body)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                failures.append(f"{op.label} ({mode.value}): {str(exc)[:800]}")
    record(
        f"fuzz_{service}",
        operations=operations,
        excluded=sorted(
            k for k in EXCLUDED if k in {o.ok().label for o in schema.get_all_operations()}
        ),
        positive_cases=calls["positive"],
        negative_cases=calls["negative"],
        negative_not_applicable=unsatisfiable,
        failures=len(failures),
    )
    assert failures == [], "\n\n".join(failures)
