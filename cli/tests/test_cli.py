"""The operator CLI."""

from __future__ import annotations

import subprocess
import sys

from odr_shared.auth import TokenService
from odr_shared.settings import ServiceSettings


def test_odr_token_prints_a_token_the_services_accept() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "odr_cli.main", "token", "--role", "admin"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    party = TokenService(ServiceSettings()).verify(out)
    assert party.role == "admin"


def test_odr_token_scopes_a_platform_token() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "odr_cli.main",
            "token",
            "--role",
            "platform",
            "--platform-id",
            "plt_x",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    party = TokenService(ServiceSettings()).verify(out)
    assert (party.role, party.platform_id) == ("platform", "plt_x")
