"""The technician's CLI as a subprocess (issue 13): finding the service's config and state,
the board simulator's console, doctor/config-check parity, re-enrollment, argument checks,
lists. Real store, real models, real pty board."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading

from gatectl.config import BoardConfig
from gatectl.hw.serial_board import SerialBoard
from tests.conftest import REPO, run_cli, wait_for


def ok(r):
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r.stdout


def one_line_error(r, code=2):
    assert r.returncode == code, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


# --- board-sim and central take their own options ------------------------------------------

def test_board_sim_and_central_help():
    for args in (["board-sim", "--help"], ["central", "--help"]):
        out = ok(run_cli(*args))
        assert out.startswith(f"usage: gatectl {args[0]}"), out
    assert "--link" in ok(run_cli("board-sim", "--help"))
    line = one_line_error(run_cli("board-sim", "--address", "0"))
    assert "--address" in line and "1..255" in line


class Lines:
    """A subprocess's stdout read by a thread, so the test waits for lines without blocking."""

    def __init__(self, proc: subprocess.Popen):
        self.q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.q.put(line) for line in proc.stdout], daemon=True).start()

    def wait(self, pred, timeout: float = 10.0) -> str:
        seen = []

        def found():
            while not self.q.empty():
                line = self.q.get()
                seen.append(line)
                if pred(line):
                    return line
            return None
        return wait_for(found, timeout, f"a matching line among {seen}")


def test_board_sim_console_drives_inputs_over_real_modbus(tmp_path):
    link = tmp_path / "relay0"
    proc = subprocess.Popen([sys.executable, "-m", "gatectl", "board-sim", "--address", "3", "--channels", "4",
                             "--inputs", "4", "--baud", "0", "--link", str(link)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)
    lines = Lines(proc)
    board = None
    try:
        first = lines.wait(lambda s: s.startswith("simulated"))
        assert "address 3, 4 relays, 4 inputs" in first and f"(link {link})" in first
        assert link.is_symlink()
        board = SerialBoard(BoardConfig(name="b", driver="modbus", port=str(link), address=3, channels=4,
                                        inputs=4, baud=115200, timeout_ms=100, poll_ms=30))
        wait_for(lambda: board.inputs() == [False] * 4, 10, "the driver to read the inputs")
        for command, want in (("in 1 on", [True, False, False, False]),       # door contact
                              ("in 3 toggle", [True, False, True, False]),    # fire alarm
                              ("input 1 off", [False, False, True, False])):
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            wait_for(lambda want=want: board.inputs() == want, 5, f"inputs {want} after '{command}'")
        proc.stdin.write("in 9 on\n")
        proc.stdin.flush()
        assert "inputs 1..4" in lines.wait(lambda s: s.startswith("error"))
        board.pulse(1, 0.3)
        lines.wait(lambda s: "2:ON" in s)
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(10) == 0
        assert not link.exists()  # the link goes with the simulator
    finally:
        if board is not None:
            board.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
