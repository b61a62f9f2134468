"""`gatectl residents card|pin|totp|face ...`: a resident's credentials besides the face.

    residents card add ID --card HEX --bits N     the card as the reader reports it
    residents card remove ID --card HEX --bits N
    residents card list ID
    residents pin set ID                          the PIN from the prompt, or one line of stdin
    residents totp add ID [--out FILE.png]        prints the provisioning URI; --out: its QR
    residents face refuse ID                      no face recognition: templates erased
    residents face allow ID

A PIN is never echoed, printed or logged: only its scrypt hash is stored.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

import pyotp

from gatectl.access.pins import check_pin_text, hash_pin
from gatectl.cli.common import AppFactory
from gatectl.cli.people import cmd_residents, one_resident
from gatectl.core.errors import UsageError
from gatectl.core.safe_text import shown
from gatectl.people.enroll import NAME_MAX, UNIT_MAX, checked_text
from gatectl.vision.qr import write_qr_png

ACTIONS = {"card": ("add", "remove", "list"), "pin": ("set",), "totp": ("add",),
           "face": ("refuse", "allow")}


def add_arguments(r: argparse.ArgumentParser) -> None:
    """The options of the credential actions, on the `residents` parser."""
    r.add_argument("target", nargs="?",
                   help="card|pin|totp|face ACTION ID: the resident; care ID on|off: on or off")
    r.add_argument("--card", metavar="HEX", help="card add/remove: the number in hex")
    r.add_argument("--bits", type=int, metavar="N", help="card add/remove: its bit length")
    r.add_argument("--out", type=Path, metavar="FILE.png", help="totp add: write the QR here")


def cmd_residents_all(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """`residents`: the credential actions here, everything else as before."""
    if args.action == "add":
        return _add(args, app_factory)
    if args.action == "care":  # `residents care ID on|off`
        if args.target not in ("on", "off"):
            raise UsageError("residents care: give the resident and on or off "
                             "(residents care ID on|off)")
        args.state, args.target = args.target, None
    if args.action not in ACTIONS:
        if args.target is not None or args.card or args.bits is not None or args.out:
            raise UsageError(f"residents {args.action}: --card, --bits and --out are for "
                             "card/totp actions")
        return cmd_residents(args, app_factory)
    group, sub = args.action, args.who
    if sub not in ACTIONS[group]:
        raise UsageError(f"residents {group}: action {shown(sub or '-', 20)!r}: choose one of "
                         f"{', '.join(ACTIONS[group])}")
    if not args.target:
        raise UsageError(f"residents {group} {sub}: which resident? give an id or name")
    app = app_factory()
    r = one_resident(app, args.target)
    store = app.store
    if group == "card":
        if sub == "list":
            for c in store.cards_of(r.id):
                print(f"{c['number']}/{c['bits']}")
            return 0
        if not args.card or args.bits is None:
            raise UsageError(f"residents card {sub}: --card HEX and --bits N are required")
        if not 1 <= args.bits <= 256:
            raise UsageError("--bits: 1-256")
        if sub == "add":
            try:
                number = store.add_card(r.id, args.card, args.bits)
            except ValueError:
                raise UsageError(
                    f"--card: {shown(args.card, 70)!r} is not a {args.bits}-bit number in hex"
                ) from None
            print(f"card {number}/{args.bits} added to resident #{r.id}")
            return 0
        if not store.remove_card(r.id, args.card, args.bits):
            raise UsageError(f"--card: resident #{r.id} has no card {shown(args.card, 70)}/"
                             f"{args.bits}")
        print(f"card removed from resident #{r.id}")
        return 0
    if group == "pin":
        store.set_pin_hash(r.id, hash_pin(_read_pin()))
        print(f"PIN set for resident #{r.id}")
        return 0
    if group == "totp":
        secret = pyotp.random_base32()
        store.set_totp_secret(r.id, secret)
        uri = pyotp.TOTP(secret).provisioning_uri(name=f"resident-{r.uid}",
                                                  issuer_name=f"gatectl {app.cfg.device.site}")
        if args.out:
            write_qr_png(uri, args.out)
        print(uri)
        print(f"the resident's app shows codes as QR 'GT1:{r.uid}:<code>'", file=sys.stderr)
        return 0
    if sub == "refuse":
        files = store.refuse_face(r.id)
        app.recorder.delete_files(files)
        print(f"resident #{r.id} refuses face recognition: templates and photos erased; "
              "cards, PINs and codes keep working")
        return 0
    store.allow_face(r.id)
    print(f"resident #{r.id} may be enrolled by photo again")
    return 0


def _add(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """`residents add --name N --unit U`: a resident without a face (who refuses it, or will
    be enrolled by photo later); their way in is a card, a PIN or a code."""
    name = checked_text("--name", args.name, NAME_MAX)
    unit = checked_text("--unit", args.unit, UNIT_MAX)
    app = app_factory()
    r = app.store.add_resident(name, unit, [], "none")
    print(f"resident #{r.id} added without a face; add a card, PIN or code")
    return 0


def _read_pin() -> str:
    """From the terminal (twice, not echoed) or one line of stdin (a script)."""
    if sys.stdin.isatty():
        first = getpass.getpass("PIN: ")
        if getpass.getpass("PIN again: ") != first:
            raise UsageError("PIN: the two entries differ")
        return check_pin_text(first)
    return check_pin_text(sys.stdin.readline(64))
