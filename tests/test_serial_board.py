"""The serial relay driver against the simulated board on a real pty, through real pyserial.

Every check looks at the bytes the simulated board received and at its coils, so a driver
that merely reports success cannot pass. Timeouts are short (50 ms, polls every 30 ms) and
waits poll for a condition with a deadline instead of sleeping a fixed time.
"""

from __future__ import annotations

import argparse
import logging
import time

import pytest
import serial
from pydantic import TypeAdapter

from gatectl.config.hardware import BoardConfig, SerialBoardConfig, SimulatedBoardConfig
from gatectl.hw.relay import BoardError, SimulatedRelay
from gatectl.hw.serial import modbus
from gatectl.hw.serial.dialect import dialect_for, wire_time_s
from gatectl.hw.serial.port import Counters, SerialBoard, SerialLink, make_board
from gatectl.hw.serial.sim import FAULTS, ModbusSim, SimulatedBoard, fill_defaults
from tests.conftest import assert_pulse_length, wait_for

BAUD = 115200
RETRIES = 2


def h(s: str) -> bytes:
    return bytes.fromhex(s)




def board_cfg(port: str, **kw) -> SerialBoardConfig:
    """Short timeouts; a Modbus board unless ``driver`` says otherwise."""
    base = {"driver": "modbus", "port": port, "baud": BAUD, "timeout_ms": 50, "poll_ms": 30,
            "retries": RETRIES, "reconnect_max_s": 0.2}
    return TypeAdapter(BoardConfig).validate_python(base | kw)


def writes(sim: SimulatedBoard, since: float) -> list[bytes]:
    """Switching frames (FC 05) the board received since ``since``: reads are left out."""
    return [f for f in sim.frames(since) if f[1] == modbus.WRITE_COIL]


@pytest.fixture
def sim():
    s = SimulatedBoard(baud=BAUD)
    yield s
    s.stop()


@pytest.fixture
def start():
    """Start a SerialBoard (optionally waiting until online); every one is closed afterwards."""
    boards: list[SerialBoard] = []

    def _start(cfg: SerialBoardConfig, online: bool = True) -> SerialBoard:
        b = SerialBoard(cfg)
        boards.append(b)
        if online:
            wait_for(lambda: b.health()["state"] == "online", what="board online")
        return b

    yield _start
    for b in boards:
        b.close()


def test_hw_pulse_sends_exactly_the_flash_frame_and_the_board_times_it(sim, start):
    board = start(board_cfg(sim.port))
    assert board.hw_pulse
    since = sim.clock()
    board.pulse(1, 3.0)
    wait_for(lambda: sim.coils()[1], what="relay 2 on")
    assert writes(sim, since) == [h("01 05 02 01 00 1E 1D BA")]  # the documented relay-2 3 s frame
    wait_for(lambda: board.is_on(1), what="read-back shows relay 2 on")

    changes: list[tuple[float, bool]] = []  # relay 1's switchings, on the board's own clock
    sim.on_change = lambda coils: changes.append((sim.clock(), coils[0]))
    since = sim.clock()
    board.pulse(0, 0.3)
    wait_for(lambda: sim.coils()[0], what="relay 1 on")
    wait_for(lambda: not sim.coils()[0], what="the board's own timer to open relay 1")
    (on_at, on), (off_at, off) = [c for i, c in enumerate(changes) if i == 0 or c[1] != changes[i - 1][1]]
    # never early; late only by how late a loaded machine wakes the simulator's thread
    assert on and not off and 0.3 <= off_at - on_at < 1.5
    # no OFF from the driver: the board timed it
    assert writes(sim, since) == [modbus.flash_on(1, 0, 0.3)]
    wait_for(lambda: not board.is_on(0), what="read-back at the pulse's end shows relay 1 off")
    assert board.is_on(1)  # the 3 s pulse still runs


def test_hw_pulse_renewal_never_shortens_a_running_pulse(sim, start):
    board = start(board_cfg(sim.port))
    since = sim.clock()
    board.pulse(0, 3.0)
    board.pulse(0, 0.5)  # an elevator-hold renewal arriving while 3 s still run
    wait_for(lambda: len(writes(sim, since)) == 2, what="two flash frames")
    first, second = writes(sim, since)
    assert first == h("01 05 02 00 00 1E 4C 7A")
    assert second[2:4] == h("02 00") and int.from_bytes(second[4:6], "big") >= 28


def test_software_pulse_when_the_board_has_no_flash(sim, start):
    board = start(board_cfg(sim.port, hw_pulse=False))
    assert not board.hw_pulse
    since = sim.clock()
    board.pulse(2, 0.2)
    wait_for(lambda: len(writes(sim, since)) == 2, what="ON then OFF from the driver")
    (t_on, on), (t_off, off) = [(t, f) for t, f in sim.received if t >= since and f[1] == 5]
    assert on == modbus.write_coil(1, 2, True) and off == modbus.write_coil(1, 2, False)
    assert_pulse_length(t_off - t_on, 0.2)
    wait_for(lambda: not sim.coils()[2] and not board.is_on(2), what="relay 3 open, and read back so")


def test_software_relock_is_retried_until_the_board_reports_off(sim, start):
    board = start(board_cfg(sim.port, hw_pulse=False))
    since = sim.clock()
    board.pulse(0, 0.15)
    wait_for(lambda: sim.coils()[0] and board.health()["commands_ok"] == 1, what="relay 1 on")
    sim.inject("exception", RETRIES + 1, function=modbus.WRITE_COIL)  # busy when the OFF is due
    wait_for(lambda: not sim.coils()[0] and not board.is_on(0), what="relay 1 off in the end")
    assert writes(sim, since).count(modbus.write_coil(1, 0, False)) == RETRIES + 2
    st = board.health()
    assert st["commands_failed"] == 1 and st["exceptions"] == RETRIES + 1


def test_all_off_at_start_and_at_close(sim, start):
    for c in range(8):
        sim.set_coil(c, True)  # left closed by a previous run
    board = start(board_cfg(sim.port))
    assert sim.coils() == [False] * 8
    assert writes(sim, float("-inf"))[0] == h("01 05 00 FF 00 00 FD FA")  # all off, first thing
    assert board.health()["on"] == [False] * 8

    board.set(3, True)
    wait_for(lambda: sim.coils()[3] and board.is_on(3), what="relay 4 latched on")
    since = sim.clock()
    board.pulse(3, 0.1)  # a latched channel stays on: no pulse may end the latch
    time.sleep(0.25)
    assert sim.coils()[3] and writes(sim, since) == []

    board.close()
    assert sim.coils() == [False] * 8
    assert board.health()["state"] == "stopped"
    assert board.inputs() is None
    with pytest.raises(BoardError, match="stopped"):
        board.pulse(0, 1.0)


def test_per_coil_off_when_the_board_has_no_all_relays_coil(start):
    sim = SimulatedBoard(baud=BAUD, dialect=ModbusSim(all_coil=False))
    try:
        sim.set_coil(5, True)
        board = start(board_cfg(sim.port))
        assert sim.coils() == [False] * 8
        assert writes(sim, float("-inf")) == [h("01 05 00 FF 00 00 FD FA")] + [
            modbus.write_coil(1, c, False) for c in range(8)]
        assert board.health()["exceptions"] == 1
    finally:
        sim.stop()


def test_inputs_are_polled(sim, start):
    board = start(board_cfg(sim.port))
    wait_for(lambda: board.inputs() == [False] * 8, what="first input snapshot")
    sim.set_input(5, True)
    wait_for(lambda: board.inputs()[5], what="input 6 active")  # a few 30 ms polls
    sim.set_input(5, False)
    wait_for(lambda: not board.inputs()[5], what="input 6 inactive")


def test_board_without_inputs_reports_an_empty_snapshot(sim, start):
    board = start(board_cfg(sim.port, inputs=0))
    assert board.inputs() == []
    assert all(f[1] != modbus.READ_INPUTS for f in sim.frames())


FAULT_COUNTER = {"timeout": "timeouts", "exception": "exceptions"}  # the rest: bad_frames


def fault_cfg(port: str) -> SerialBoardConfig:
    """Time enough to answer that a loaded machine's late genuine reply is never a timeout the
    test did not inject (a silent fault then costs 300 ms an attempt)."""
    return board_cfg(port, timeout_ms=300)


@pytest.mark.parametrize("kind", FAULTS)
def test_fault_within_retries_is_retried_and_counted(sim, start, kind):
    board = start(fault_cfg(sim.port))
    before = board.health()
    sim.inject(kind, RETRIES, function=modbus.WRITE_COIL)
    since = sim.clock()
    board.pulse(0, 5.0)
    wait_for(lambda: board.health()["commands_ok"] == 1, what="the pulse to succeed")
    st = board.health()
    assert sim.coils()[0]
    assert writes(sim, since) == [modbus.flash_on(1, 0, 5.0)] * (RETRIES + 1)
    counter = FAULT_COUNTER.get(kind, "bad_frames")
    assert st[counter] - before[counter] == RETRIES
    assert st["retries"] - before["retries"] == RETRIES
    assert st["commands_failed"] == 0 and st["state"] == "online"


@pytest.mark.parametrize("kind", [k for k in FAULTS if k != "timeout"])
def test_fault_beyond_retries_fails_the_command_and_is_never_acted_on(sim, start, kind):
    board = start(fault_cfg(sim.port))
    sim.inject(kind, RETRIES + 1, function=modbus.WRITE_COIL)
    board.set(0, True)
    wait_for(lambda: board.health()["commands_failed"] == 1, what="the command to fail")
    st = board.health()
    assert st["commands_ok"] == 0
    assert st[FAULT_COUNTER.get(kind, "bad_frames")] == RETRIES + 1
    assert st["state"] == "online"  # the board answers: it is there, only this command failed
    assert "failed 3 time(s)" in st["last_error"]
    # a busy board did not switch; a garbled reply may hide a switch that happened: either
    # way is_on follows the coil read-back, never the rejected reply
    wait_for(lambda: board.is_on(0) == sim.coils()[0], what="read-back to match the board")
    assert sim.coils()[0] == (kind != "exception")


def test_garbled_polls_never_change_the_inputs(sim, start):
    sim.set_input(1, True)
    board = start(fault_cfg(sim.port))
    truth = [i == 1 for i in range(8)]
    wait_for(lambda: board.inputs() == truth, what="first snapshot")
    for kind in ("garbage", "foreign", "bad_crc", "short"):
        sim.inject(kind, RETRIES + 1, function=modbus.READ_INPUTS)
    end = time.monotonic() + 10.0
    while board.health()["reads_failed"] < 4 and time.monotonic() < end:
        assert board.inputs() == truth
        time.sleep(0.002)
    assert board.health()["reads_failed"] == 4
    assert board.health()["bad_frames"] == 4 * (RETRIES + 1)


def test_board_not_answering_goes_offline_and_back(sim, start, caplog):
    caplog.set_level(logging.INFO, logger="gatectl.relay")
    board = start(board_cfg(sim.port))
    sim.inject("timeout", RETRIES + 1, function=modbus.WRITE_COIL)
    board.pulse(0, 1.0)
    wait_for(lambda: board.health()["reconnects"] == 1, what="reconnect after the silent board")
    st = board.health()
    assert st["state"] == "online" and st["commands_failed"] == 1 and st["timeouts"] == RETRIES + 1
    assert not sim.coils()[0]  # the request was lost every time: nothing switched
    warnings = [r for r in caplog.records
                if r.levelno == logging.WARNING and "offline" in r.message]
    assert len(warnings) == 1 and "no reply" in warnings[0].message
    assert sum("back online" in r.message for r in caplog.records) == 1


def test_wrong_address_is_offline(sim, start):
    board = start(board_cfg(sim.port, address=7), online=False)
    wait_for(lambda: "no reply" in (board.health()["last_error"] or ""), what="the silent board noticed")
    assert board.health()["state"] == "offline"
    assert board.inputs() is None
    assert not any(f[0] == 1 for f in sim.frames())  # only unit 7 was ever asked


def test_missing_port_then_plugged_then_unplugged(tmp_path, start, caplog):
    caplog.set_level(logging.INFO, logger="gatectl.relay")
    link = tmp_path / "gatectl-relay0"
    board = start(board_cfg(str(link)), online=False)
    wait_for(lambda: board.health()["last_error"] not in (None, "connecting"), what="first open attempt")
    st = board.health()
    assert st["state"] == "offline" and str(link) in st["last_error"]
    assert board.inputs() is None
    with pytest.raises(BoardError, match="offline"):
        board.pulse(0, 1.0)
    assert board.health()["commands_rejected"] == 1

    sims = [SimulatedBoard(baud=BAUD)]
    try:
        link.symlink_to(sims[0].port)  # the adapter is plugged in
        wait_for(lambda: board.health()["state"] == "online", what="online once the port exists")
        assert board.health()["reconnects"] == 1
        wait_for(lambda: board.inputs() is not None, what="inputs polled")

        sims[0].stop()  # unplugged
        wait_for(lambda: board.health()["state"] == "offline", what="offline after the unplug")
        assert board.inputs() is None

        sims.append(SimulatedBoard(baud=BAUD))
        sims[1].set_coil(0, True)
        link.unlink()
        link.symlink_to(sims[1].port)  # plugged back in (the udev symlink follows it)
        wait_for(lambda: board.health()["state"] == "online", what="online again")
        assert board.health()["reconnects"] == 2
        assert sims[1].coils() == [False] * 8  # every reconnect starts from all off
    finally:
        for s in sims:
            s.stop()
    offline = [r for r in caplog.records if r.levelno == logging.WARNING and "offline" in r.message]
    assert len(offline) == 2  # one per outage, however many reopen attempts failed
    assert sum("back online" in r.message for r in caplog.records if r.levelno == logging.INFO) == 2


def test_full_queue_rejects_instead_of_dropping(start):
    slow = SimulatedBoard(baud=1200)  # ~0.13 s per transaction at 1200 baud
    try:
        board = start(board_cfg(slow.port, baud=1200, poll_ms=1000))
        try:
            with pytest.raises(BoardError, match="queue full"):
                for _ in range(200):
                    board.set(0, True)
            assert board.health()["commands_rejected"] == 1
        finally:
            board.close()
    finally:
        slow.stop()


ALL_OFF_LCUS = [h("A0 01 00 A1"), h("A0 02 00 A2"), h("A0 03 00 A3"), h("A0 04 00 A4")]


def test_lcus_driver(start):
    sim = SimulatedBoard(channels=4, dialect="lcus")
    try:
        for c in range(4):
            sim.set_coil(c, True)
        board = start(board_cfg(sim.port, driver="lcus", channels=4, baud=9600))
        assert not board.hw_pulse
        assert board.inputs() == []
        assert sim.coils() == [False] * 4
        assert sim.frames() == ALL_OFF_LCUS

        since = sim.clock()
        board.pulse(0, 0.2)
        wait_for(lambda: len(sim.frames(since)) == 2, what="ON then OFF")
        (t_on, on), (t_off, off) = [(t, f) for t, f in sim.received if t >= since]
        assert (on, off) == (h("A0 01 01 A2"), h("A0 01 00 A1"))
        assert_pulse_length(t_off - t_on, 0.2)
        wait_for(lambda: not sim.coils()[0] and not board.is_on(0), what="channel 1 off")

        board.set(1, True)
        wait_for(lambda: sim.coils()[1], what="channel 2 latched")
        assert board.is_on(1)
        since = sim.clock()
        board.close()
        wait_for(lambda: len(sim.frames(since)) == 4 and sim.coils() == [False] * 4,
                 what="all off at close")
        assert sim.frames(since) == ALL_OFF_LCUS
    finally:
        sim.stop()


def test_lcus_unplug_is_noticed_without_a_command(start):
    sim = SimulatedBoard(channels=2, dialect="lcus")
    board = start(board_cfg(sim.port, driver="lcus", channels=2))
    sim.stop()
    wait_for(lambda: board.health()["state"] == "offline", what="offline after the unplug")


def test_write_hook_timestamps_every_frame(sim):
    seen: list[tuple[bytes, float]] = []
    board = SerialBoard(board_cfg(sim.port), on_write=lambda frame, t: seen.append((frame, t)))
    try:
        wait_for(lambda: board.health()["state"] == "online", what="online")
        t0 = board.clock()
        board.pulse(0, 1.0)
        flash = modbus.flash_on(1, 0, 1.0)
        wait_for(lambda: any(f == flash for f, _ in seen), what="flash frame written")
        t_write = next(t for f, t in seen if f == flash)
        assert 0 <= t_write - t0 < 0.5
        assert board.health()["frames_sent"] == len(seen)
    finally:
        board.close()


def test_make_board():
    assert isinstance(make_board(SimulatedBoardConfig()), SimulatedRelay)
    sim = SimulatedBoard()
    try:
        board = make_board(board_cfg(sim.port))
        assert isinstance(board, SerialBoard)
        board.close()
    finally:
        sim.stop()


def test_board_sim_answers_in_the_configured_boards_dialect():
    """`gatectl board-sim --board NAME` takes what the options leave open from that board."""
    args = argparse.Namespace(dialect=None, address=None, channels=None, inputs=None, baud=9600)
    fill_defaults(args, board_cfg("/dev/null", driver="lcus", channels=2))
    assert (args.dialect, args.address, args.channels, args.inputs) == ("lcus", 1, 2, 0)
    assert args.baud == 9600  # given on the command line: kept
    args = argparse.Namespace(dialect=None, address=None, channels=None, inputs=None, baud=None)
    fill_defaults(args, board_cfg("/dev/null", address=7))
    assert (args.dialect, args.address, args.channels, args.baud) == ("modbus", 7, 8, BAUD)


# ---- the simulator answers like a board -------------------------------------------------

@pytest.fixture
def link(sim):
    port = serial.serial_for_url(sim.port, baudrate=BAUD, timeout=0.005)
    yield SerialLink(port, dialect_for(board_cfg(sim.port, retries=0)), Counters())
    port.close()


def read_raw(link: SerialLink, n: int, timeout: float = 0.1) -> bytes:
    """What arrives within ``timeout``: for requests the driver would never send."""
    link.port.timeout = timeout
    return link.port.read(n)


def test_sim_refuses_unsupported_requests(link):
    with pytest.raises(BoardError, match="illegal data address"):
        link.transact(modbus.write_coil(1, 0x10, True))
    with pytest.raises(BoardError, match="illegal data value"):
        link.transact(modbus.with_crc(h("01 05 02 00 00 00")))  # a flash of 0 x 100 ms
    with pytest.raises(BoardError, match="illegal data address"):
        link.transact(modbus.read_coils(1, 0, 9))
    link.send(modbus.with_crc(h("01 03 00 00 00 01")))  # FC 03: not a relay board function
    assert read_raw(link, 5) == modbus.with_crc(h("01 83 01"))


def test_sim_stays_silent_on_bad_crc_and_other_units(sim, link):
    link.send(h("01 05 00 00 FF 00 8C 3B"))
    link.send(modbus.write_coil(2, 0, True))
    assert read_raw(link, 1) == b""
    assert sim.coils()[0] is False
    link.send(modbus.write_coil(0, 0, True))  # broadcast: applied, never answered
    wait_for(lambda: sim.coils()[0], what="broadcast applied")
    assert read_raw(link, 1) == b""


def test_sim_flash_off_and_rearm(sim, link):
    sim.set_coil(2, True)
    link.transact(modbus.flash_off(1, 2, 0.2))
    assert not sim.coils()[2]
    wait_for(lambda: sim.coils()[2], 0.5, what="the board's timer closes relay 3 again")
    link.transact(modbus.flash_on(1, 0, 0.2))
    time.sleep(0.1)
    link.transact(modbus.flash_on(1, 0, 0.2))  # re-arm: 0.2 s from now, not from the first
    time.sleep(0.15)
    assert sim.coils()[0]
    wait_for(lambda: not sim.coils()[0], 0.5, what="relay 1 open after the re-armed timer")


def test_sim_honours_the_baud_rate():
    slow = SimulatedBoard(baud=9600)
    try:
        port = serial.serial_for_url(slow.port, baudrate=9600, timeout=0.005)
        link = SerialLink(port, dialect_for(board_cfg(slow.port, baud=9600)), Counters())
        t = time.monotonic()
        link.transact(modbus.read_coils(1, 0, 8))
        assert time.monotonic() - t >= wire_time_s(8 + 6, 9600)  # 14.6 ms on the wire
        port.close()
    finally:
        slow.stop()
