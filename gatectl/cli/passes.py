"""`gatectl central pass issue`: a visitor pass signed with the centre's key, as a token and a
QR image the visitor shows to a door camera. Revoking one is the signed command ``pass.revoke``
(`gatectl central cmd ... pass.revoke pass_id=ID`), which every device stores.

    gatectl central pass issue --site S --door lobby [--door @east] --from 2026-12-03T09:00
        --to 2026-12-03T18:00 --uses 2 --key central.key [--kid central-1] [--id ID]
        [--out pass.png]
"""

from __future__ import annotations

import argparse
import secrets
import sys
from datetime import datetime
from pathlib import Path

from gatectl.access.passes import issue_pass
from gatectl.core.errors import UsageError
from gatectl.sync.signing import load_private_key
from gatectl.vision.qr import write_qr_png


def _when(text: str) -> float:
    """ISO 8601 (a time without offset is this machine's local time) or epoch seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: ISO 8601 time or epoch seconds") from None


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gatectl central pass")
    sub = ap.add_subparsers(dest="action", required=True)
    p = sub.add_parser("issue", help="sign a visitor pass; print the token, write its QR")
    p.add_argument("--site", required=True)
    p.add_argument("--door", action="append", required=True,
                   help="a door, or @group (access.door_groups); repeatable")
    p.add_argument("--from", dest="valid_from", type=_when, required=True)
    p.add_argument("--to", dest="valid_to", type=_when, required=True)
    p.add_argument("--uses", type=int, default=1)
    p.add_argument("--key", type=Path, required=True, help="Ed25519 private key (keygen)")
    p.add_argument("--kid", default="central-1")
    p.add_argument("--id", dest="pass_id", help="pass id (default: random)")
    p.add_argument("--out", type=Path, help="PNG of the QR code (default: pass-<id>.png)")
    return ap


def central_pass(argv: list[str]) -> int:
    """`gatectl central pass ...` (everything after ``pass``)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message
        return int(exc.code or 0)
    if not 1 <= args.uses <= 10_000:
        raise UsageError("--uses: 1-10000")
    try:
        key = load_private_key(args.key)
    except ValueError as exc:
        raise UsageError(f"--key: {exc}") from None
    pass_id = args.pass_id or secrets.token_hex(8)
    try:
        token = issue_pass(key, args.kid, pass_id=pass_id, site=args.site, doors=args.door,
                           valid_from=args.valid_from, valid_to=args.valid_to, uses=args.uses)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    out = args.out or Path(f"pass-{pass_id}.png")
    write_qr_png(token, out)
    print(token)
    print(f"pass {pass_id}: QR code written to {out}", file=sys.stderr)
    return 0
