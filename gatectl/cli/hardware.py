"""`gatectl relay` and `board-sim`: the boards by hand, and a simulated board on a pty."""

from __future__ import annotations

import argparse
import sys
import time

from gatectl.cli.common import (
    AppFactory,
    print_table,
)
from gatectl.core.errors import UsageError
from gatectl.core.safe_text import shown
from gatectl.runtime.doctor import wait_online, wait_state


def cmd_relay(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """For technicians wiring a site: drive one output, or watch the inputs."""
    app = app_factory()
    try:
        if args.action == "pulse":
            if not args.output:
                raise UsageError("relay pulse: give --output NAME (see [[outputs]] in the config)")
            try:
                o = app.cfg.output(args.output)
            except StopIteration:
                names = ", ".join(x.name for x in app.cfg.outputs) or "none configured"
                raise UsageError(
                    f"--output: unknown output '{shown(args.output, 40)}' ({names})"
                ) from None
            board = app.boards[o.board]
            wait_online(board, args.timeout)
            seconds = min(args.seconds, o.max_on_s)
            if seconds < args.seconds:
                print(
                    f"gatectl: --seconds {args.seconds:g} capped at "
                    f"outputs.{o.name}.max_on_s = {o.max_on_s:g}",
                    file=sys.stderr,
                )
            app.outputs.pulse(o.name, seconds)
            mode = "board-timed" if board.hw_pulse else "software-timed"
            label = f"output {o.name} (board {o.board} channel {o.channel})"
            on = wait_state(board, o.channel, True, time.monotonic() + 1.0)
            print(
                f"{label}: {'on' if on else 'NOT reported on'} for {seconds:g} s ({mode})",
                flush=True,
            )
            # stay until the pulse has ended: a software-timed one needs this process, and the
            # technician wants to see the board report the relay off again
            off = wait_state(board, o.channel, False, time.monotonic() + seconds + 2.0)
            print(f"{label}: {'off again' if off else 'STILL ON'}")
            return 0 if on and off else 1
        for board in app.boards.values():
            wait_online(board, args.timeout)
        states = app.controls.input_states()
        rows = [[i.name, i.board, str(i.index), i.role, i.door or i.elevator or "-",
                 "?" if states[i.name] is None else ("ACTIVE" if states[i.name] else "inactive")]
                for i in app.cfg.inputs]
        print_table(rows, ["input", "board", "index", "role", "door/elevator", "state"])
        for name, board in app.boards.items():
            raw = board.inputs()
            print(f"board {name}: " + ("unreachable" if raw is None else
                                       " ".join(f"{k}:{int(v)}" for k, v in enumerate(raw))))
        return 0
    finally:
        app.close()


def cmd_board_sim(args: argparse.Namespace, app_factory: AppFactory) -> int:
    """With --board, the simulator answers as that configured board and knows its inputs' names."""
    from gatectl.hw.serial.sim import fill_defaults, serve

    if not args.board:
        return serve(args)
    cfg = args.load_config()
    try:
        board = cfg.board(args.board)
    except StopIteration:
        raise UsageError(f"--board: no board '{shown(args.board, 40)}' in the config "
                         f"({', '.join(b.name for b in cfg.boards) or 'none'})") from None
    fill_defaults(args, board)
    return serve(
        args, names={i.name: (i.index, i.role) for i in cfg.inputs if i.board == board.name}
    )
