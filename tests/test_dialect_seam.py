"""A relay dialect is one module (and its config model): a toy ASCII dialect, registered here
as the module ``gatectl.hw.serial.toy`` and nowhere else, is driven by the real port thread
over a real pty (pyserial), with the simulator speaking it. Every check looks at the bytes the
board received and at its relays.

The toy protocol (a line protocol some cheap RS-485 boards use): ``S<ch><0|1>\\r`` switches a
relay (1-based, two digits) and is answered ``OK\\r``; ``A0\\r`` opens all; ``R\\r`` / ``I\\r``
are answered ``R0101...\\r`` / ``I00...\\r``; a refusal is ``ER\\r``.
"""

from __future__ import annotations

import sys
from typing import Literal

import pytest
from pydantic import Field

from gatectl.config import parse_config
from gatectl.config.hardware import BOARD_DRIVERS, BOARD_TAGS, SerialBoardConfig
from gatectl.config.base import ConfigError
from gatectl.hw.serial.dialect import Dialect, FrameError, Refused, dialect_for
from gatectl.hw.serial.port import SerialBoard
from gatectl.hw.serial.sim import SimulatedBoard
from tests.conftest import assert_pulse_length, wait_for

BAUD = 115200
RETRIES = 2


class ToyBoardConfig(SerialBoardConfig):
    driver: Literal["toy"] = Field("toy", description="The toy ASCII relay board of this test.")
    inputs: int = Field(4, ge=0, le=8, description="Inputs the toy board reports, 0-8.")


class ToyRefused(Refused):
    @property
    def final(self) -> bool:
        return True

    @property
    def unsupported(self) -> bool:
        return True


class ToyDialect(Dialect):
    driver = "toy"
    answers = True

    def __init__(self, cfg: ToyBoardConfig):
        self.cfg = cfg
        self.inputs = cfg.inputs

    def switch(self, channel: int, on: bool) -> bytes:
        return b"S%02d%d\r" % (channel + 1, on)

    def all_off(self) -> bytes:
        return b"A0\r"

    def read_relays(self) -> bytes:
        return b"R\r"

    def read_inputs(self) -> bytes:
        return b"I\r"

    def reply_length(self, request: bytes) -> int:
        count = {b"R": self.cfg.channels, b"I": self.cfg.inputs}.get(request[:1])
        return 3 if count is None else 2 + count

    def parse(self, request: bytes, reply: bytes) -> list[bool] | None:
        if reply == b"ER\r":
            raise ToyRefused("board said ER")
        if request[:1] in (b"R", b"I"):
            bits = reply[1:-1]
            framed = reply[:1] == request[:1] and reply[-1:] == b"\r"
            if len(reply) != self.reply_length(request) or not framed or set(bits) - set(b"01"):
                raise FrameError(f"bad reply {reply!r} to {request!r}")
            return [b == ord("1") for b in bits]
        if reply != b"OK\r":
            raise FrameError(f"bad reply {reply!r} to {request!r}")
        return None


class ToySim:
    """The simulated toy board: what it does with each line; ``garbage`` garbles replies."""

    def __init__(self) -> None:
        self.garble = 0

    def inject(self, kind: str, count: int, function: int | None) -> None:
        assert kind == "garbage"
        self.garble += count

    def take_frame(self, buf: bytearray, silent: bool) -> bytes | None:
        end = buf.find(b"\r")
        if end < 0:
            return None
        frame = bytes(buf[:end + 1])
        del buf[:end + 1]
        return frame

    def handle(self, board: SimulatedBoard, frame: bytes) -> bytes:
        if frame == b"A0\r":
            board.apply(dict.fromkeys(range(board.channels), False))
            reply = b"OK\r"
        elif frame[:1] == b"S" and len(frame) == 5 and 1 <= int(frame[1:3]) <= board.channels:
            board.apply({int(frame[1:3]) - 1: frame[3:4] == b"1"})
            reply = b"OK\r"
        elif frame in (b"R\r", b"I\r"):
            bits = board.coils() if frame == b"R\r" else board.input_states()
            reply = frame[:1] + bytes(b"01"[b] for b in bits) + b"\r"
        else:
            reply = b"ER\r"
        if self.garble:
            self.garble -= 1
            return b"O?\r"
        return reply


DIALECT = ToyDialect  # what makes this module a dialect


@pytest.fixture
def toy(monkeypatch):
    """The one registration a new dialect needs: its module at gatectl.hw.serial.<driver> (a
    file there; here this test module, undone after the test)."""
    monkeypatch.setitem(sys.modules, "gatectl.hw.serial.toy", sys.modules[__name__])


@pytest.fixture
def sim():
    s = SimulatedBoard(channels=4, inputs=4, baud=BAUD, dialect=ToySim())
    yield s
    s.stop()


def switches(sim: SimulatedBoard, since: float) -> list[bytes]:
    return [f for f in sim.frames(since) if f[:1] in (b"S", b"A")]


def test_a_registered_toy_dialect_runs_on_the_real_port_thread(toy, sim):
    for c in range(4):
        sim.set_coil(c, True)  # left closed by whatever ran before
    board = SerialBoard(ToyBoardConfig(port=sim.port, channels=4, baud=BAUD, timeout_ms=50,
                                       poll_ms=30, retries=RETRIES, reconnect_max_s=0.2))
    try:
        wait_for(lambda: board.health()["state"] == "online", what="toy board online")
        assert board.health()["driver"] == "toy" and not board.hw_pulse
        assert sim.coils() == [False] * 4 and sim.frames()[0] == b"A0\r"  # safe state first
        assert board.health()["on"] == [False] * 4  # read back with R

        since = sim.clock()
        board.pulse(1, 0.2)  # no board-timed pulse: the port thread must relock it
        wait_for(lambda: len(switches(sim, since)) == 2, what="ON, then OFF from the port thread")
        (t_on, on), (t_off, off) = [(t, f) for t, f in sim.received if t >= since and f[:1] == b"S"]
        assert (on, off) == (b"S021\r", b"S020\r")
        assert_pulse_length(t_off - t_on, 0.2)
        wait_for(lambda: not sim.coils()[1] and not board.is_on(1), what="relay 2 off, read back")

        sim.set_input(2, True)
        wait_for(lambda: board.inputs() == [False, False, True, False], what="input 3 polled")

        sim.inject("garbage", RETRIES)
        before = board.health()
        board.set(3, True)
        wait_for(lambda: board.health()["commands_ok"] > before["commands_ok"], what="the latch")
        st = board.health()
        assert sim.coils()[3] and board.is_on(3)
        assert st["bad_frames"] - before["bad_frames"] == RETRIES  # refused by the dialect's parse
        assert st["retries"] - before["retries"] == RETRIES
    finally:
        board.close()
    assert sim.coils() == [False] * 4 and board.health()["state"] == "stopped"


def test_a_refusal_the_dialect_calls_unsupported_falls_back_to_one_relay_at_a_time(toy):
    class NoAllOff(ToySim):
        def handle(self, board: SimulatedBoard, frame: bytes) -> bytes:
            return b"ER\r" if frame == b"A0\r" else super().handle(board, frame)

    sim = SimulatedBoard(channels=3, inputs=0, baud=BAUD, dialect=NoAllOff())
    try:
        sim.set_coil(2, True)
        board = SerialBoard(ToyBoardConfig(port=sim.port, channels=3, inputs=0, baud=BAUD,
                                           timeout_ms=50))
        try:
            wait_for(lambda: board.health()["state"] == "online", what="online")
            assert sim.coils() == [False] * 3
            assert switches(sim, float("-inf")) == [b"A0\r", b"S010\r", b"S020\r", b"S030\r"]
            assert board.inputs() == []
        finally:
            board.close()
    finally:
        sim.stop()


def test_every_board_driver_parses_to_its_model_and_every_serial_one_has_its_dialect():
    """The [[boards]] union is `config.BOARD_DRIVERS`; a serial driver's code is found by name."""
    for model in BOARD_DRIVERS:
        driver = model.model_fields["driver"].default
        serial = issubclass(model, SerialBoardConfig)
        board = {"driver": driver} | ({"port": "/dev/null"} if serial else {})
        cfg = parse_config({"boards": [board]})
        assert type(cfg.boards[0]) is model
        if serial:
            assert dialect_for(cfg.boards[0]).driver == driver
    assert type(parse_config({"boards": [{}]}).boards[0]).__name__ == "SimulatedBoardConfig"


def test_an_unknown_driver_is_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError) as exc:
        parse_config({"boards": [{"driver": "toy", "port": "/dev/null"}]})
    [line] = exc.value.lines
    assert line.startswith("boards[0]: ") and "'toy'" in line
    assert all(f"'{d}'" in line for d in BOARD_TAGS)


def test_a_dialect_module_without_its_dialect_is_named():
    with pytest.raises(TypeError, match="gatectl.hw.serial.dialect declares no DIALECT"):
        dialect_for(ToyBoardConfig.model_construct(driver="dialect", port="/dev/null"))
