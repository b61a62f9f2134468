"""`gatectl status hash-password`: the line to paste as `[status].password_hash`, so the
config holds an scrypt hash and never the page's password."""

from __future__ import annotations

import argparse
import getpass
import sys

from gatectl.cli.common import AppFactory
from gatectl.core.errors import UsageError
from gatectl.web.auth import MAX_PASSWORD, hash_password


def read_password() -> str:
    """Asked twice on a terminal; else the first line of stdin (a script, a password manager)."""
    if sys.stdin.isatty():
        first = getpass.getpass("status page password: ")
        if getpass.getpass("again: ") != first:
            raise UsageError("the two passwords differ")
        return first
    line = sys.stdin.readline(MAX_PASSWORD + 2)
    return line.removesuffix("\n")


def cmd_hash_password(args: argparse.Namespace, app_factory: AppFactory) -> int:
    print(f'password_hash = "{hash_password(read_password())}"')
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser("status", help="the local status page")
    actions = st.add_subparsers(dest="status_action", required=True)
    hp = actions.add_parser(
        "hash-password",
        help="read a password (prompt, or stdin) and print the [status] password_hash line",
    )
    hp.set_defaults(func=cmd_hash_password)
