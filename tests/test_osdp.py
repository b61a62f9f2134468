"""OSDP readers: libosdp's peripheral device on a real pty against the panel thread.

Each test runs the real protocol (Secure Channel handshake, polling, framing) between
`gatectl.hw.osdp.panel.ReaderPanel` and `gatectl.hw.osdp.sim.SimulatedReader`; the sink is a
recording stand-in for the access decision.
"""

from __future__ import annotations

import threading

import osdp
import pytest

from gatectl.config.base import ConfigError
from gatectl.config.readers import ReaderConfig
from gatectl.domain.credentials import Outcome, Presented
from gatectl.hw.osdp.panel import ReaderPanel, card_value
from gatectl.hw.osdp.sim import SimulatedReader
from tests.conftest import wait_for

KEY = bytes(range(16))
WRONG = bytes(reversed(range(16)))
ONLINE_S = 10.0  # handshake on a loaded 2-core machine


class Sink:
    """Records what reaches the decision and answers from ``answers`` (default: refused)."""

    def __init__(self) -> None:
        self.seen: list[Presented] = []
        self.answer = Outcome(False, "unknown card")
        self.lock = threading.Lock()

    def __call__(self, p: Presented) -> Outcome:
        with self.lock:
            self.seen.append(p)
        return self.answer


@pytest.fixture
def bus(request):
    """(panel, reader, sink, events) with the reader holding ``request.param`` (default KEY)."""
    pd_key = getattr(request, "param", KEY)
    reader = SimulatedReader(address=3, scbk=pd_key)
    cfg = ReaderConfig(name="lobby-r1", door="lobby", port=reader.port, address=3,
                       scbk=KEY.hex())
    sink = Sink()
    events: list[tuple[str, str]] = []
    panel = ReaderPanel(reader.port, 9600, [cfg], lambda door: sink,
                        lambda src, why: events.append((src, why)))
    panel.start()
    yield panel, reader, sink, events
    panel.stop()
    reader.stop()


def online(panel: ReaderPanel) -> None:
    wait_for(lambda: panel.readers[0].online, ONLINE_S, "the reader online")


def test_card_read_reaches_the_sink_with_number_and_bits_over_the_secure_channel(bus):
    panel, reader, sink, events = bus
    online(panel)
    assert panel.readers[0].secure and reader.secure()
    assert ("lobby-r1", "reader_online (secure channel)") in events
    reader.card(0x1A2B3C4, bits=26)
    wait_for(lambda: sink.seen, 5, "the card at the sink")
    p = sink.seen[0]
    assert (p.kind, p.door, p.source, p.value, p.bits) == ("card", "lobby", "lobby-r1",
                                                           "1a2b3c4", 26)


def test_keypad_pin_arrives_on_enter_and_star_clears(bus):
    panel, reader, sink, _ = bus
    online(panel)
    reader.keys("99*2468#")
    wait_for(lambda: sink.seen, 5, "the PIN at the sink")
    assert [(p.kind, p.value, p.bits) for p in sink.seen] == [("pin", "2468", None)]


@pytest.mark.parametrize(("answer", "colour", "beep"), [
    (Outcome(True, "resident #1"), osdp.CommandLEDColor.Green, 1),
    (Outcome(False, "unknown card"), osdp.CommandLEDColor.Red, 10),
    (Outcome(False, "card ok, PIN next", pending=True), osdp.CommandLEDColor.Amber, None),
])
def test_the_outcome_drives_the_readers_led_and_buzzer(bus, answer, colour, beep):
    panel, reader, sink, _ = bus
    online(panel)
    sink.answer = answer
    reader.card(77, bits=26)
    wait_for(lambda: any(c["command"] == osdp.Command.LED for c in reader.received()), 5,
             "the LED command at the reader")
    if beep is not None:
        wait_for(lambda: any(c["command"] == osdp.Command.Buzzer for c in reader.received()),
                 5, "the buzzer command at the reader")
    led = [c for c in reader.received() if c["command"] == osdp.Command.LED]
    buzz = [c for c in reader.received() if c["command"] == osdp.Command.Buzzer]
    assert [c["on_color"] for c in led] == [colour]
    assert [c["on_count"] for c in buzz] == ([] if beep is None else [beep])


@pytest.mark.parametrize("bus", [WRONG], indirect=True)
def test_a_reader_with_the_wrong_key_is_refused_and_reported(bus):
    panel, reader, sink, events = bus
    wait_for(lambda: any(why.startswith("reader_refused") for _, why in events), ONLINE_S,
             "the refusal event")
    reader.card(0x1A2B3C4, bits=26)
    reader.keys("1234#")
    assert not panel.readers[0].online and not reader.secure()
    assert sink.seen == []
    assert not any(why.startswith("reader_online") for _, why in events)


def test_a_tampered_reader_is_reported_and_its_reads_refused_until_cleared(bus):
    panel, reader, sink, events = bus
    online(panel)
    reader.tamper(True)
    wait_for(lambda: ("lobby-r1", "reader_tamper") in events, 5, "the tamper event")
    reader.card(5, bits=26)
    wait_for(lambda: panel.readers[0].refused_tampered == 1, 5, "the refused read")
    wait_for(lambda: any(c["command"] == osdp.Command.LED for c in reader.received()), 5,
             "the red LED")
    assert [c["on_color"] for c in reader.received()
            if c["command"] == osdp.Command.LED] == [osdp.CommandLEDColor.Red]
    assert sink.seen == []
    reader.tamper(False)
    wait_for(lambda: ("lobby-r1", "reader_tamper_cleared") in events, 5, "tamper cleared")
    reader.card(6, bits=26)
    wait_for(lambda: sink.seen, 5, "the card after the tamper cleared")
    assert sink.seen[0].value == "0000006"


def test_reader_offline_when_it_goes_silent(bus):
    panel, reader, _, events = bus
    online(panel)
    reader.silence()
    wait_for(lambda: ("lobby-r1", "reader_offline") in events, 15, "the offline event")
    assert panel.port_error is None  # the port is fine: the reader stopped answering


def test_card_value_ignores_padding_bits():
    assert card_value(bytes([0xFF, 0xFF, 0xFF, 0xFF]), 26) == "3ffffff"
    assert card_value(bytes([0x80]), 1) == "1"
    assert card_value(bytes([0x12, 0x34]), 16) == "1234"


def test_config_needs_a_key_for_the_secure_channel_and_one_bus_baud():
    with pytest.raises(ValueError, match="secure = true needs scbk"):
        ReaderConfig(name="r", door="d", port="/dev/ttyUSB0")
    with pytest.raises(ValueError, match="32 hex digits"):
        ReaderConfig(name="r", door="d", port="/dev/ttyUSB0", scbk="00" * 15 + "zz")
    from gatectl.config import parse_config

    base = {"outputs": [{"name": "d", "channel": 0}], "doors": [{"name": "d", "output": "d"}]}
    with pytest.raises(ConfigError) as exc:
        parse_config({**base, "readers": [
            {"name": "a", "door": "d", "port": "/dev/ttyUSB0", "secure": False},
            {"name": "b", "door": "x", "port": "/dev/ttyUSB0", "secure": False, "baud": 115200},
        ]})
    assert exc.value.lines == [
        "readers[1].door: unknown door 'x'",
        "readers[1].baud: port /dev/ttyUSB0 runs at 9600 for another reader",
        "readers[1].address: address 0 on /dev/ttyUSB0 is already reader 'a'",
    ]


def test_the_runtime_records_reader_events_in_the_store_and_an_unwired_build_refuses(app):
    """`gatectl run`'s owner (runtime.readers) over the device's real recorder: the reader
    coming online is a `system` event in the store, its health is in the runner's status, and
    without an access decision wired every card is refused (red), never granted."""
    from gatectl.runtime.readers import Readers, unwired_sink
    from gatectl.runtime.runner import Runner

    reader = SimulatedReader(address=0, scbk=KEY)
    cfg = ReaderConfig(name="r0", door="door", port=reader.port, scbk=KEY.hex())
    readers = Readers([cfg], unwired_sink, lambda: app.recorder)
    readers.start()
    try:
        wait_for(lambda: [e for e in app.store.events(kind="system") if e.gate == "r0"],
                 ONLINE_S, "the reader's online event in the store")
        [ev] = [e for e in app.store.events(kind="system") if e.gate == "r0"]
        assert ev.reason == "reader_online (secure channel)"
        reader.card(1234, 26)
        wait_for(lambda: reader.received(), 5, "the feedback")
        assert [c["on_color"] for c in reader.received()
                if c["command"] == osdp.Command.LED] == [osdp.CommandLEDColor.Red]
        h = readers.health()[reader.port]["readers"]["r0"]
        assert (h["online"], h["secure"], h["reads"]) == (True, True, 1)
        assert Runner(app).health()["readers"] == {}  # the default config has no readers
    finally:
        readers.stop()
        reader.stop()


def test_install_mode_gives_a_factory_fresh_reader_the_configured_key():
    """A reader on the default key (install mode) opens the channel with it once, gets the
    configured SCBK by KEYSET, and from then on a normal panel (install_mode off, the Secure
    Channel enforced) talks to it with that key."""
    reader = SimulatedReader(address=0, scbk=None, install_mode=True)
    events: list[str] = []
    cfg = ReaderConfig(name="new", door="d", port=reader.port, scbk=KEY.hex(), install_mode=True)
    panel = ReaderPanel(reader.port, 9600, [cfg], lambda d: Sink(),
                        lambda src, why: events.append(why))
    panel.start()
    try:
        wait_for(lambda: any(w.startswith("reader_keyset") for w in events), ONLINE_S,
                 "the key sent")
        wait_for(lambda: [c for c in reader.received() if c["command"] == osdp.Command.Keyset],
                 5, "the KEYSET at the reader")
        keysets = [c for c in reader.received() if c["command"] == osdp.Command.Keyset]
        assert keysets[0]["data"] == KEY
    finally:
        panel.stop()
    sink, events2 = Sink(), []
    normal = ReaderPanel(reader.port, 9600, [cfg.model_copy(update={"install_mode": False})],
                         lambda d: sink, lambda src, why: events2.append(why))
    normal.start()
    try:
        wait_for(lambda: normal.readers[0].online, ONLINE_S, "online with the new key")
        assert normal.readers[0].secure
        reader.card(42, 26)
        wait_for(lambda: sink.seen, 5, "a card over the new key")
    finally:
        normal.stop()
        reader.stop()


def test_gatectl_run_starts_the_readers_and_records_their_events(tmp_path):
    """The daemon itself (a subprocess) with a reader on the simulated bus: it comes online
    over the Secure Channel (a `system` event in the store) and, with no access decision wired
    in this build, a card is refused at the reader - red LED, never the door."""
    import subprocess
    import sys

    from gatectl.store import Store
    from tests.conftest import REPO

    reader = SimulatedReader(address=2, scbk=KEY)
    cfg = tmp_path / "device.toml"
    cfg.write_text(f"""
[[cameras]]
name = "cam0"
source = "0"
[[outputs]]
name = "door"
channel = 0
[[doors]]
name = "door"
output = "door"
[[gates]]
kind = "face"
name = "gate"
camera = "cam0"
door = "door"
[[readers]]
name = "r2"
door = "door"
port = "{reader.port}"
address = 2
scbk = "{KEY.hex()}"
""")
    data = tmp_path / "state"
    proc = subprocess.Popen([sys.executable, "-m", "gatectl", "--config", str(cfg), "--data",
                             str(data), "run"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr or ():
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        # the store is the daemon's to create and migrate; read it once the daemon runs
        wait_for(lambda: any("running 1 gate" in ln for ln in lines), 120, "the daemon running")

        def online() -> bool:
            s = Store(data / "gatectl.db")
            try:
                return any(e.gate == "r2" and e.reason.startswith("reader_online")
                           for e in s.events(kind="system"))
            finally:
                s.close()

        wait_for(online, 120, "the reader online in the daemon's store")
        reader.card(99, 26)
        wait_for(lambda: [c for c in reader.received() if c["command"] == osdp.Command.LED], 10,
                 "the reader's feedback")
        assert [c["on_color"] for c in reader.received()
                if c["command"] == osdp.Command.LED] == [osdp.CommandLEDColor.Red]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        finally:
            proc.kill()
            reader.stop()
    assert proc.returncode == 0 and not any("Traceback" in ln for ln in lines), "".join(lines)


def test_reader_sim_console_and_bad_arguments_are_one_line():
    import subprocess
    import sys

    from tests.conftest import REPO

    r = subprocess.run([sys.executable, "-m", "gatectl", "reader-sim", "--scbk", KEY.hex()],
                       input="card 26 1a2b\npin 1234\ncard 4 ff\nquit\n", cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("simulated OSDP reader on /dev/pts/") and "Secure Channel" in lines[0]
    assert "card 26 bits 1a2b presented" in lines and "PIN of 4 digits entered" in lines
    assert any(ln.startswith("error: card: ff does not fit 4 bits") for ln in lines)
    bad = subprocess.run([sys.executable, "-m", "gatectl", "reader-sim", "--scbk", "00ff"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].endswith(
        "--scbk: an SCBK is 16 bytes written as 32 hex digits")


def test_a_reader_that_never_answers_is_reported_once(monkeypatch):
    import os
    import tty

    from gatectl.hw.osdp import panel as panel_mod

    monkeypatch.setattr(panel_mod, "ABSENT_S", 1.0)
    master, slave = os.openpty()  # a bus with nothing on it
    tty.setraw(slave)
    events: list[str] = []
    cfg = ReaderConfig(name="ghost", door="d", port=os.ttyname(slave), scbk=KEY.hex())
    panel = ReaderPanel(cfg.port, 9600, [cfg], lambda d: Sink(), lambda s, w: events.append(w))
    panel.start()
    try:
        wait_for(lambda: events, 10, "the absent reader reported")
        assert events == ["reader_not_answering: nothing online at address 0 on "
                          f"{cfg.port} after 1 s"]
        assert not any(w.startswith("reader_refused") for w in events)  # no key problem seen
    finally:
        panel.stop()
        os.close(master)
        os.close(slave)


def test_the_doctor_checks_each_reader_and_names_a_wrong_key():
    from gatectl.config import parse_config
    from gatectl.runtime.doctor import reader_checks

    good, bad = SimulatedReader(address=0, scbk=KEY), SimulatedReader(address=0, scbk=WRONG)
    try:
        cfg = parse_config({
            "outputs": [{"name": "d", "channel": 0}], "doors": [{"name": "d", "output": "d"}],
            "readers": [{"name": "good", "door": "d", "port": good.port, "scbk": KEY.hex()},
                        {"name": "bad", "door": "d", "port": bad.port, "scbk": KEY.hex()}]})
        (ok1, line1), (ok2, line2) = reader_checks(cfg, 5.0)
        assert ok1 and line1 == f"reader good (address 0 on {good.port}): online, Secure Channel"
        assert not ok2 and line2.startswith(f"reader bad (address 0 on {bad.port}): "
                                            "reader_refused")
    finally:
        good.stop()
        bad.stop()


def test_a_failing_decision_refuses_and_the_bus_goes_on(bus):
    panel, reader, sink, _ = bus
    online(panel)
    calls: list[Presented] = []

    def broken(p: Presented) -> Outcome:
        calls.append(p)
        if len(calls) == 1:
            raise RuntimeError("store gone")
        return Outcome(True, "resident #1")

    panel.readers[0].sink = broken
    reader.card(1, 26)
    wait_for(lambda: [c for c in reader.received() if c["command"] == osdp.Command.LED], 5,
             "red for the failed decision")
    reader.card(2, 26)
    wait_for(lambda: len([c for c in reader.received() if c["command"] == osdp.Command.LED]) == 2,
             5, "green for the next")
    assert [c["on_color"] for c in reader.received() if c["command"] == osdp.Command.LED] == [
        osdp.CommandLEDColor.Red, osdp.CommandLEDColor.Green]
    assert panel.alive()
