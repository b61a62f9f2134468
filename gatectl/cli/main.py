"""The `gatectl` command: thin - parse, call, print. Bad input is one line, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import NoReturn

from gatectl.cli.common import (
    add_list_options,
)
from gatectl.cli.credentials import add_arguments as add_credential_arguments
from gatectl.cli.credentials import cmd_residents_all
from gatectl.cli.ebike import cmd_ebike
from gatectl.cli.events import cmd_events
from gatectl.cli.hardware import cmd_board_sim, cmd_relay
from gatectl.cli.models import cmd_models
from gatectl.cli.people import cmd_enroll, cmd_watchlist
from gatectl.cli.service import (
    check_ownership,
    cmd_central,
    cmd_clock,
    cmd_config_check,
    cmd_demo,
    cmd_doctor,
    cmd_replay,
    cmd_run,
    cmd_sync,
    scratch_config,
    scratch_store,
)
from gatectl.cli.vehicles import cmd_plates, cmd_vehicles
from gatectl.config import default_config, load_config
from gatectl.core.argtypes import number_in
from gatectl.core.errors import GatectlError, UsageError
from gatectl.core.paths import (
    default_data_dir,
    find_config,
    system_config_path,
    system_state_dir,
)
from gatectl.core.safe_text import shown
from gatectl.people.enroll import (
    NAME_MAX,
    UNIT_MAX,
)
from gatectl.runtime.app import App, simulated_boards

log = logging.getLogger("gatectl")

# Command groups that plug in: each module has ``register(sub)`` adding its subparsers (with
# ``set_defaults(func=...)``); one line here per group, as gate kinds have GATE_KINDS.
COMMAND_MODULES: tuple[str, ...] = (
    "gatectl.cli.backup",
    "gatectl.cli.status",
    "gatectl.cli.readers",
    "gatectl.cli.consent",
    "gatectl.cli.analyse",
)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + line
        raise UsageError(f"{self.prog}: {message}")


# --- helpers ---------------------------------------------------------------------------------


# --- commands --------------------------------------------------------------------------------


# --- parser ----------------------------------------------------------------------------------


def build_parser() -> Parser:
    p = Parser(prog="gatectl", description="Edge daemon for the gates of a residential compound.")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="device TOML; default $GATECTL_CONFIG, else the service's "
        f"{system_config_path()}, else built-in one-gate defaults",
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="state folder (store, snapshots); default the config's "
        f"storage.state_dir, $STATE_DIRECTORY, the service's {system_state_dir()}, else "
        f"{default_data_dir()[0]}",
    )
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    c = sub.add_parser("config", help="check a config file")
    c.add_argument("action", choices=["check"])
    c.add_argument("file")
    c.set_defaults(func=cmd_config_check)

    e = sub.add_parser("enroll", help="enroll a resident from photos or a live camera")
    e.add_argument("--name", help=f"at most {NAME_MAX} printable characters")
    e.add_argument(
        "--unit", help=f"building-unit-room, e.g. 3-2-1501 (at most {UNIT_MAX} characters)"
    )
    e.add_argument(
        "--resident",
        metavar="ID",
        help="re-enroll: add these photos to an enrolled resident "
        "(restarts their inactivity clock)",
    )
    e.add_argument("--photo", action="append", default=[], metavar="FILE")
    e.add_argument("--camera", metavar="NAME", help="capture from a configured camera instead")
    e.add_argument("--consent", choices=["local", "site"], default="local",
                   help="the person's consent to face recognition: local (default, the law's: "
                   "templates stay on this device) or site (replicated to the site's devices)")
    e.add_argument("--consent-by", metavar="NAME",
                   help="who recorded the consent (default: the login user)")
    e.set_defaults(func=cmd_enroll)

    r = sub.add_parser(
        "residents", help="list, show, update, remove, reactivate, suspend or import residents"
    )
    r.add_argument("action", choices=["list", "show", "update", "remove", "reactivate", "suspend",
                                      "import", "add", "card", "pin", "totp", "face", "care"])
    r.add_argument("who", nargs="?",
                   help="resident id or exact name; import: a FOLDER (a sub-folder per resident, "
                   "unit__name or with resident.json) or a CSV (name,unit,photos)")
    r.add_argument("--refusals", metavar="FILE",
                   help="import: who was refused and why, as CSV (default "
                   "./import-refusals-TIME.csv)")
    r.add_argument("--name", help="update: new name")
    r.add_argument("--unit", help="update: move to this unit")
    r.add_argument(
        "--add-photo", action="append", default=[], metavar="FILE", help="update: more photos"
    )
    r.add_argument(
        "--replace-photos",
        action="append",
        default=[],
        metavar="FILE",
        help="update: these photos instead of all the old ones",
    )
    r.add_argument(
        "--status", choices=["active", "suspended", "re-enrollment required"], help="list: filter"
    )
    add_list_options(r)
    add_credential_arguments(r)
    r.set_defaults(func=cmd_residents_all, state=None)  # care's on|off: the positional after ID

    w = sub.add_parser("watchlist", help="faces that raise an alert")
    w.add_argument("action", choices=["add", "remove", "list"])
    w.add_argument("id", nargs="?", help="entry id (remove)")
    w.add_argument("--name")
    w.add_argument("--photo", action="append", default=[], metavar="FILE")
    w.add_argument("--resident", metavar="ID", help="put an enrolled resident on the watchlist")
    w.add_argument("--reason", default="")
    add_list_options(w)
    w.set_defaults(func=cmd_watchlist)

    pl = sub.add_parser("plates", help="vehicle lists: resident whitelist, visitors, blacklist")
    pl.add_argument("action", choices=["add", "remove", "list"])
    pl.add_argument("plate", nargs="?")
    pl.add_argument("--list", choices=["resident", "visitor", "blacklist"], default=None)
    pl.add_argument("--resident", metavar="ID", help="the resident the car belongs to")
    pl.add_argument("--unit")
    pl.add_argument("--note", help="e.g. the reason for a blacklist entry")
    pl.add_argument("--from", dest="from_", metavar="TIME", help="valid from (ISO date/time)")
    pl.add_argument(
        "--to", metavar="TIME", help="valid until (ISO date/time); required for visitors"
    )
    pl.add_argument("--name", help="list: part of the owner's name")
    add_list_options(pl)
    pl.set_defaults(func=cmd_plates)

    vh = sub.add_parser("vehicles", help="vehicle entry/exit records")
    vh.add_argument("action", choices=["log", "inside"])
    vh.add_argument("--plate")
    vh.add_argument("--since", help="30m, 2h, 7d, or an ISO date/time")
    vh.add_argument("--days", type=number_in(0, 3650, unit=" days"), metavar="N",
                    help="inside: flag stays longer than this (default from the lanes)")
    vh.add_argument("--json", action="store_true")
    vh.set_defaults(func=cmd_vehicles)

    ev = sub.add_parser("events", help="list or export recorded events")
    ev.add_argument("action", choices=["list", "export"])
    ev.add_argument("--since", help="30m, 2h, 7d, or an ISO date/time")
    ev.add_argument("--kind", choices=["access", "alert", "control", "command", "camera", "system"])
    ev.add_argument("--gate")
    ev.add_argument("--limit", type=number_in(1, 100_000, int), default=200, metavar="N")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--format", choices=["csv", "zip"],
                    help="export: csv (default), or zip with the snapshots and SHA256SUMS")
    ev.add_argument("--out", metavar="FILE", help="export: write here (csv: default stdout)")
    ev.set_defaults(func=cmd_events)

    mo = sub.add_parser(
        "models", help="install a site's own e-bike detector (checked first); list the models"
    )
    mo.add_argument("action", choices=["install", "list"])
    mo.add_argument("file", nargs="?", type=Path, metavar="FILE", help="install: the ONNX file")
    mo.add_argument("--name", help="install: its registry name (default: the file's stem)")
    mo.set_defaults(func=cmd_models)

    eb = sub.add_parser(
        "ebike", help="collect: save an e-bike gate's candidate frames to label and train on"
    )
    eb.add_argument("action", choices=["collect"])
    eb.add_argument("--gate", required=True, metavar="NAME", help="the e-bike gate")
    eb.add_argument("--out", required=True, type=Path, metavar="DIR",
                    help="the dataset folder (new, empty, or one collect made)")
    eb.add_argument("--source", metavar="FILE|FOLDER|URL",
                    help="frames from here instead of the gate's camera")
    eb.add_argument("--max", type=number_in(1, 100_000, int), default=2000, metavar="N",
                    help="frames in DIR at most (1..100000, default 2000)")
    eb.add_argument("--empty-every", type=number_in(0, 86400, unit=" s"), default=60.0,
                    metavar="S", help="one frame without a detection every S seconds (default 60)")
    eb.add_argument("--low", type=number_in(0.01, 0.99), default=0.05, metavar="S",
                    help="also save frames with a detection scoring at least this (default 0.05)")
    eb.set_defaults(func=cmd_ebike)

    d = sub.add_parser("doctor", help="check models, store, disk and cameras")
    d.add_argument(
        "--camera-timeout",
        type=number_in(0.1, 120, unit=" s"),
        default=5.0,
        metavar="S",
        help="wait this long for each camera's first frame (0.1..120 s)",
    )
    d.set_defaults(func=cmd_doctor)

    sub.add_parser("run", help="run the configured gates until stopped").set_defaults(func=cmd_run)

    sy = sub.add_parser("sync", help="central sync: outbox state, ask the centre for a full resync")
    sy.add_argument("action", choices=["status", "resync"])
    sy.set_defaults(func=cmd_sync)

    ck = sub.add_parser(
        "clock", help="the daemon's trust in the wall clock; trust it again after a jump"
    )
    ck.add_argument("action", choices=["status", "trust"])
    ck.add_argument("--timeout", type=number_in(0.5, 120, unit=" s"), default=15.0, metavar="S",
                    help="trust: wait this long for the running daemon to apply it (0.5..120 s)")
    ck.set_defaults(func=cmd_clock)

    # no arguments of its own: main() hands the rest of the line to gatectl.central.tool
    # (argparse.REMAINDER after a subcommand refuses options such as --help)
    ce = sub.add_parser(
        "central",
        help="reference central-side tool (watch a site, enroll, signed commands)",
        add_help=False,
    )
    ce.set_defaults(func=cmd_central)

    rl = sub.add_parser("relay", help="pulse an output or read the inputs (wiring a site)")
    rl.add_argument("action", choices=["pulse", "inputs"])
    rl.add_argument("--output", metavar="NAME")
    rl.add_argument("--seconds", type=number_in(0.1, 600, unit=" s"), default=1.0, metavar="S",
                    help="pulse length, 0.1..600 s, capped at the output's max_on_s (default 1)")
    rl.add_argument("--timeout", type=number_in(0.1, 120, unit=" s"), default=5.0, metavar="S",
                    help="wait this long for the board (0.1..120 s)")
    rl.set_defaults(func=cmd_relay)

    from gatectl.hw.serial.sim import CONSOLE_HELP, add_arguments

    bs = sub.add_parser(
        "board-sim",
        help="a simulated Modbus RTU relay board on a pty (bench tool)",
        epilog=CONSOLE_HELP,
    )
    add_arguments(bs)
    bs.add_argument(
        "--board",
        metavar="NAME",
        help="answer as this [[boards]] entry of the config (address, "
        "channels, inputs, baud) and accept its [[inputs]] names on the console",
    )
    bs.set_defaults(func=cmd_board_sim)

    rp = sub.add_parser("replay", help="feed images, folders or videos through a gate")
    rp.add_argument("paths", nargs="+", metavar="PATH")
    rp.add_argument("--gate", help="gate to use (face, plate or e-bike); default the first")
    rp.add_argument("--json", action="store_true", help="one JSON object per decision")
    rp.add_argument(
        "--store",
        action="store_true",
        help="record into the real store (events, snapshots, last seen); default a scratch copy",
    )
    rp.set_defaults(func=cmd_replay)

    dm = sub.add_parser(
        "demo", help="enroll sample residents in a scratch store and replay samples"
    )
    dm.add_argument("--json", action="store_true")
    dm.set_defaults(func=cmd_demo)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from gatectl.runtime.systemd import setup_logging

    try:
        args, rest = build_parser().parse_known_args(argv)
        if args.command == "central":
            args.central_args = rest
        elif rest:
            raise UsageError(
                f"gatectl {args.command}: unrecognized arguments: {shown(' '.join(rest), 80)}"
            )
        config_path, config_origin = find_config(args.config)
        args.config_path = config_path
        # these never act on the service's config or state, so a broken one must not stop them
        own = args.command in ("board-sim", "central", "config", "demo", "reader-sim")
        cfg = load_config(config_path) if config_path and not own else default_config()
        args.load_config = lambda: load_config(config_path) if config_path else default_config()
        # the daemon logs at the configured level; one-shot commands only say what went wrong
        one_shot = ("replay", "demo", "relay", "doctor", "ebike")
        quiet = "error" if args.command in one_shot else "warning"
        setup_logging(args.log_level or (cfg.log_level if args.command == "run" else quiet),
                      cfg.logging if args.command == "run" else None)
        service_config = config_origin in ("$GATECTL_CONFIG", "the service's config")
        data, data_origin = ((Path(args.data), "--data") if args.data
                             else default_data_dir(cfg.storage.state_dir, service_config))
        announced = False

        def app_factory(simulated: bool = False, scratch: Path | None = None) -> App:
            """The App on the service's state; ``scratch``: on a copy of its store there."""
            nonlocal announced
            if not announced and (data_origin != "--data" or service_config):
                announced = True  # what was picked for the technician, said once on stderr
                print(
                    f"gatectl: config {config_path or '-'} ({config_origin}); "
                    f"state {data} ({data_origin})",
                    file=sys.stderr,
                )
            boards = simulated_boards(cfg) if simulated else None
            app = App(cfg, data, boards=boards)
            check_ownership(app)
            if scratch is None:
                return app
            return App(scratch_config(cfg), scratch_store(app, scratch), boards=boards,
                       site_models=app.site_models)

        return args.func(args, app_factory)
    except UsageError as exc:  # outside text in a message went through shown() where it was quoted
        msg = str(exc)
        print(msg if msg.startswith("gatectl") else f"gatectl: {msg}", file=sys.stderr)
        return 2
    except GatectlError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"gatectl: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so in one line; the traceback goes to the debug log
        log.debug("internal error", exc_info=True)
        print(
            f"gatectl: internal error: {type(exc).__name__}: {exc} (run with "
            "--log-level debug for details)",
            file=sys.stderr,
        )
        return 70
