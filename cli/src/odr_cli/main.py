"""`odr`: the operator's command line."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

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

    stack = sub.add_parser("stack", help="run the whole platform on this machine (make run)")
    stack.add_argument("--var", default="var", help="folder for databases, logs and uploads")
    stack.add_argument("--reset", action="store_true", help="delete the SQLite files first")
    stack.set_defaults(func=cmd_stack)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
