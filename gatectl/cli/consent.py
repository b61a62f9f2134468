"""`gatectl consent withdraw ID`: a resident withdraws consent to face recognition.

Their face data (templates, enrollment photos, event snapshots) is erased here at once and, if
it had been replicated (consent scope ``site``), everywhere else through the centre's signed
change; the resident stays, with their cards, PINs and events. Recorded as `gatectl enroll
--consent local|site --consent-by NAME`; shown by `residents show`.
"""

from __future__ import annotations

import argparse
from typing import Any

from gatectl.cli.common import AppFactory
from gatectl.cli.people import one_resident


def register(sub: Any) -> None:
    c = sub.add_parser("consent", help="withdraw a resident's consent to face recognition")
    c.add_argument("action", choices=["withdraw"])
    c.add_argument("who", help="resident id or exact name")
    c.set_defaults(func=cmd_consent)


def cmd_consent(args: argparse.Namespace, app_factory: AppFactory) -> int:
    app = app_factory()
    r = one_resident(app, args.who)
    files, scope = app.store.withdraw_consent(r.id)
    app.recorder.delete_files(files)
    where = {
        "site": "here; the erasure goes to the centre for every device they were replicated to",
        "local": "on this device (their consent kept them here)",
        None: "on this device; no consent was recorded here - if they were enrolled on another "
              "device or at the centre, withdraw there too",
    }[scope]
    print(f"resident #{r.id}: consent withdrawn; face templates, {len(files)} photo/snapshot "
          f"file(s) erased {where}. Other credentials keep working.")
    return 0
