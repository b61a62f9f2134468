"""A card and a PIN on a real OSDP reader (libosdp's peripheral device on a pty, Secure Channel
on) decided by the door's real access point - the path a face goes through - and shown back on
the reader: the card opens the door (green), `card+pin` waits for the PIN (amber) and then opens,
an unknown card is refused (red) and the door stays locked. Real SQLite, real controls, the
in-memory relay board."""

from __future__ import annotations

import osdp
import pytest

from gatectl.access.pins import hash_pin
from gatectl.config import default_config
from gatectl.config.access import AccessConfig
from gatectl.config.hardware import DoorConfig
from gatectl.config.readers import ReaderConfig
from gatectl.hw.osdp.sim import SimulatedReader
from gatectl.hw.relay import SimulatedRelay
from gatectl.runtime.app import App
from gatectl.runtime.readers import Readers
from tests.conftest import wait_for

KEY = bytes(range(16))
ONLINE_S = 10.0


@pytest.fixture
def door(tmp_path):
    """(app, reader, relay, readers) for a door whose policy the test gives."""
    made = []

    def build(policy: str):
        reader = SimulatedReader(address=0, scbk=KEY)
        relay = SimulatedRelay(8, 8)
        cfg = default_config().model_copy(update={
            "doors": [DoorConfig(name="door", output="door")],
            "access": AccessConfig.model_validate(
                {"doors": [{"door": "door", "policy": policy, "within_s": 10}]}),
            "readers": [ReaderConfig(name="r0", door="door", port=reader.port,
                                     scbk=KEY.hex())],
        })
        app = App(cfg, tmp_path / f"state{len(made)}", boards={"main": relay})
        readers = Readers(cfg.readers, lambda d: app.access_point(d).present,
                          lambda: app.recorder)
        readers.start()
        made.append((app, reader, readers))
        wait_for(lambda: readers.health()[reader.port]["readers"]["r0"]["online"], ONLINE_S,
                 "the reader online over the Secure Channel")
        assert readers.health()[reader.port]["readers"]["r0"]["secure"]
        return app, reader, relay

    yield build
    for app, reader, readers in made:
        readers.stop()
        reader.stop()
        app.close()


def resident(app: App) -> int:
    r = app.store.add_resident("r", "A1-101", [], "none")
    app.directory.refresh()
    return r.id


def leds(reader: SimulatedReader) -> list:
    return [c["on_color"] for c in reader.received() if c["command"] == osdp.Command.LED]


def test_a_card_on_the_reader_opens_the_door_through_the_access_point(door):
    app, reader, relay = door("card")
    rid = resident(app)
    app.store.add_card(rid, "1A2B3C4", 26)
    reader.card(0x1A2B3C4, bits=26)
    wait_for(lambda: relay.is_on(0), 10, "the door unlocked")
    [ev] = app.store.events(kind="access")
    assert (ev.decision, ev.resident_id, ev.credential) == ("granted", rid, "card")
    wait_for(lambda: leds(reader), 5, "the reader's LED")
    assert leds(reader)[-1] == osdp.CommandLEDColor.Green


def test_card_plus_pin_waits_for_the_pin_and_an_unknown_card_is_refused(door):
    app, reader, relay = door("card+pin")
    rid = resident(app)
    app.store.add_card(rid, "C0FFEE", 26)
    app.store.set_pin_hash(rid, hash_pin("1357"))
    reader.card(0x999, bits=26)  # nobody's card
    wait_for(lambda: leds(reader), 5, "the refusal shown")
    assert leds(reader)[-1] == osdp.CommandLEDColor.Red and not relay.is_on(0)
    reader.card(0xC0FFEE, bits=26)
    wait_for(lambda: len(leds(reader)) >= 2, 5, "the first factor shown")
    assert leds(reader)[-1] == osdp.CommandLEDColor.Amber and not relay.is_on(0)
    reader.keys("1357#")
    wait_for(lambda: relay.is_on(0), 10, "the door unlocked after the PIN")
    granted = [e for e in app.store.events(kind="access") if e.decision == "granted"]
    assert [(e.resident_id, e.credential) for e in granted] == [(rid, "card+pin")]
