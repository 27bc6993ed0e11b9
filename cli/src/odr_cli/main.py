"""`odr`: the operator's command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import timedelta
from typing import Any

from odr_shared.auth import ROLES, TokenService
from odr_shared.settings import ServiceSettings


def cmd_token(args: argparse.Namespace) -> int:
    """Print a JWT signed with this environment's key (the local stack's by default)."""
    tokens = TokenService(ServiceSettings())
    token = tokens.issue(
        role=args.role,
        subject=args.sub or f"{args.role}-cli",
        ttl=timedelta(seconds=args.ttl),
        platform_id=args.platform_id,
        order_id=args.order_id,
        neutral_id=args.neutral_id,
    )
    print(token)
    return 0


def _split(values: list[str] | None) -> list[str]:
    """Accept both `--category a --category b` and `--category a,b`."""
    return [v.strip() for raw in values or [] for v in raw.split(",") if v.strip()]


def cmd_neutral_add(args: argparse.Namespace) -> int:
    """Register a mediator/arbitrator with the mediation service (admin token, over HTTP)."""
    import getpass

    import httpx

    password = args.password or os.environ.get("ODR_NEUTRAL_PASSWORD") or getpass.getpass()
    token = TokenService(ServiceSettings()).issue(
        role="admin", subject="odr-cli", ttl=timedelta(minutes=5)
    )
    body = {
        "name": args.name,
        "email": args.email,
        "phone": args.phone,
        "password": password,
        "roles": _split(args.role),
        "categories": _split(args.category),
        "languages": _split(args.language),
        "regions": _split(args.region),
        "max_active_cases": args.max_active_cases,
        "conflicts": {
            "platform_ids": _split(args.conflict_platform),
            "seller_ids": _split(args.conflict_seller),
        },
    }
    try:
        r = httpx.post(
            f"{args.mediation_url.rstrip('/')}/v1/neutrals",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        print(f"mediation unreachable at {args.mediation_url}: {exc}", file=sys.stderr)
        return 2
    if r.status_code != 201:
        print(f"refused ({r.status_code}): {r.text}", file=sys.stderr)
        return 1
    print(json.dumps(r.json()))
    return 0


def _gateway_call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> int:
    """Call the gateway's admin API with a freshly minted admin token; print the JSON answer."""
    import httpx

    token = TokenService(ServiceSettings()).issue(
        role="admin", subject="odr-cli", ttl=timedelta(minutes=5)
    )
    url = args.gateway_url.rstrip("/") + path
    try:
        r = httpx.request(
            method, url, headers={"Authorization": f"Bearer {token}"}, timeout=15, **kwargs
        )
    except httpx.HTTPError as exc:
        print(f"odr: cannot reach the gateway at {args.gateway_url}: {exc}", file=sys.stderr)
        return 2
    if r.status_code >= 400:
        print(r.text, file=sys.stderr)
        return 1
    print(json.dumps(r.json(), indent=2, ensure_ascii=False))
    return 0


def cmd_platform_add(args: argparse.Namespace) -> int:
    """Register a marketplace; prints its id, webhook secret and API client (shown once)."""
    body: dict[str, Any] = {"name": args.name, "kind": args.kind}
    for field in ("signing_secret", "app_key", "push_url", "outbound_url"):
        value = getattr(args, field)
        if value:
            body[field] = value
    return _gateway_call(args, "POST", "/v1/platforms", json=body)


def cmd_platform_list(args: argparse.Namespace) -> int:
    return _gateway_call(args, "GET", "/v1/platforms")


PRIVACY_SERVICES = ("gateway", "complaints", "mediation", "notifications")


def cmd_privacy_purge(args: argparse.Namespace) -> int:
    """Apply (or, with --dry-run, count) every service's retention rules now."""
    from odr_shared.retention import purge_service

    services = args.service or list(PRIVACY_SERVICES)
    report: dict[str, dict[str, int]] = {}
    for service in services:
        try:
            report[service] = purge_service(service, args.dry_run)
        except Exception as exc:  # noqa: BLE001 - one failing database must not hide the others
            print(f"odr: {service}: {type(exc).__name__}: {exc}", file=sys.stderr)
            report[service] = {}
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "services": report}, indent=2))
    else:
        verb = "would delete or empty" if args.dry_run else "deleted or emptied"
        for service, counts in report.items():
            for rule, n in counts.items():
                print(f"{service:<14} {rule:<32} {n:>9}  rows {verb}")
    return 1 if any(not counts for counts in report.values()) else 0


def cmd_stack(args: argparse.Namespace) -> int:
    from odr_cli.stack import run_stack

    return run_stack(var_dir=args.var, reset=args.reset)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="odr", description="Operate the ODR platform.")
    sub = parser.add_subparsers(dest="command", required=True)

    tok = sub.add_parser("token", help="print a JWT for a role")
    tok.add_argument("--role", choices=ROLES, required=True)
    tok.add_argument("--sub", help="subject (defaults to <role>-cli)")
    tok.add_argument("--platform-id")
    tok.add_argument("--order-id", help="consumer tokens: {platform_id}:{order_code}")
    tok.add_argument("--neutral-id")
    tok.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    tok.set_defaults(func=cmd_token)

    neutral = sub.add_parser("neutral", help="manage mediators and arbitrators")
    neutral_sub = neutral.add_subparsers(dest="neutral_command", required=True)
    add = neutral_sub.add_parser("add", help="register a neutral with the mediation service")
    add.add_argument("--name", required=True)
    add.add_argument("--email", required=True)
    add.add_argument("--phone", required=True)
    add.add_argument("--password", help="else $ODR_NEUTRAL_PASSWORD, else asked")
    add.add_argument("--role", action="append", required=True, help="mediator, arbitrator")
    add.add_argument("--category", action="append", required=True)
    add.add_argument("--language", action="append", required=True, help="vi, en, hmn, km...")
    add.add_argument("--region", action="append")
    add.add_argument("--max-active-cases", type=int, default=10)
    add.add_argument("--conflict-platform", action="append", help="a platform_id")
    add.add_argument("--conflict-seller", action="append", help="a seller id")
    add.add_argument(
        "--mediation-url",
        default=os.environ.get("MEDIATION_URL", "http://127.0.0.1:8003"),
        help="default: $MEDIATION_URL or http://127.0.0.1:8003",
    )
    add.set_defaults(func=cmd_neutral_add)
    platform = sub.add_parser("platform", help="marketplace platforms (gateway admin API)")
    platform.add_argument(
        "--gateway-url",
        default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8001"),
        help="gateway base URL (env GATEWAY_URL)",
    )
    psub = platform.add_subparsers(dest="platform_command", required=True)
    add = psub.add_parser("add", help="register a platform")
    add.add_argument("--name", required=True)
    add.add_argument(
        "--kind",
        required=True,
        choices=["standard", "shopee", "lazada", "tiktok", "shopify", "haravan", "sapo"],
    )
    add.add_argument("--signing-secret", help="the secret the marketplace signs with")
    add.add_argument("--app-key", help="Lazada / TikTok Shop app key (part of the signed text)")
    add.add_argument("--push-url", help="Shopee: the push URL configured in its console")
    add.add_argument("--outbound-url", help="where case events are delivered")
    add.set_defaults(func=cmd_platform_add)
    lst = psub.add_parser("list", help="list platforms")
    lst.set_defaults(func=cmd_platform_list)

    privacy = sub.add_parser("privacy", help="personal data: retention (docs/privacy.md)")
    privacy_sub = privacy.add_subparsers(dest="privacy_command", required=True)
    purge = privacy_sub.add_parser(
        "purge", help="apply each service's retention rules now (its database from its settings)"
    )
    purge.add_argument("--dry-run", action="store_true", help="count what would go; change nothing")
    purge.add_argument("--service", action="append", choices=PRIVACY_SERVICES)
    purge.add_argument("--json", action="store_true", help="print the counts as JSON")
    purge.set_defaults(func=cmd_privacy_purge)

    stack = sub.add_parser("stack", help="run the whole platform on this machine (make run)")
    stack.add_argument("--var", default="var", help="folder for databases, logs and uploads")
    stack.add_argument(
        "--reset",
        action="store_true",
        help="start afresh: delete the folder and, on PostgreSQL, drop the stack's databases",
    )
    stack.set_defaults(func=cmd_stack)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
