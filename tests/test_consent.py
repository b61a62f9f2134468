"""Consent to face recognition and where face data goes, over the real Mosquitto (tests/broker.py)
with the reference centre: ``local`` templates never leave the enrolling device, ``site``
templates are replicated, and withdrawing consent erases them on every device while the
resident (and their other credentials) stays."""

from __future__ import annotations

import pytest

from gatectl.config.sync import SyncConfig
from gatectl.domain.consent import Consent
from gatectl.people.enroll import Sample
from gatectl.central.tool import Central
from gatectl.sources.media import read_image
from tests.conftest import FACES, ok, run_cli, wait_for
from tests.test_sync import CENTRAL_KEY, CENTRAL_KID, SITE, Device, sync_cfg, toml


@pytest.fixture
def site(tmp_path, broker):
    """Two devices and a relaying, signing centre on one broker; the centre relays what a device
    sends up to the whole site (``replicate="site"``): which templates go up at all is the
    device's consent filter under test."""
    relay = Central(SyncConfig(enabled=True, host=broker.host, port=broker.port), SITE, relay=True,
                    key=CENTRAL_KEY, kid=CENTRAL_KID, replicate="site")
    relay.start()
    a = Device(tmp_path / "a", sync_cfg(broker, "dev-a"))
    b = Device(tmp_path / "b", sync_cfg(broker, "dev-b"))
    yield a, b, relay
    a.close()
    b.close()
    relay.stop()


def photo(name: str) -> list[Sample]:
    return [Sample(name, read_image(FACES / name))]


def drained(dev: Device) -> None:
    """Everything the device queued has been confirmed by the centre (so it went up)."""
    wait_for(lambda: dev.app.store.outbox_stats()["pending"] == 0, 30, "the outbox drained")


def test_local_consent_keeps_the_templates_on_the_enrolling_device(site):
    a, b, relay = site
    local = a.app.enroller().enroll_resident("Rose Leslie", "2-302", photo("rose_leslie_01.jpg"),
                                             Consent("local", "desk"))
    unrecorded = a.app.enroller().enroll_resident("Kit Harington", "2-301",
                                                  photo("kit_harington_01.jpeg"))
    shared = a.app.enroller().enroll_resident("Barack Obama", "1-101", photo("obama_01.jpg"),
                                              Consent("site", "desk"))
    got = wait_for(lambda: b.app.store.find_residents(shared.uid), 30, "the site resident on B")
    assert b.app.store.template_count(("resident", got[0].id)) == 1
    drained(a)  # the two others went up first, and the centre has decided them
    for r in (local, unrecorded):
        assert not b.app.store.find_residents(r.uid)
        held = relay.residents.get(r.uid)
        assert held is None or not held.get("templates"), "a local face reached the centre"
    assert a.app.store.template_count(("resident", local.id)) == 1  # still works here


def test_withdrawing_consent_erases_the_templates_on_both_devices_and_keeps_the_resident(
        site, broker, tmp_path):
    a, b, _ = site
    cfg = tmp_path / "a.toml"  # the CLI runs on device A's config: sync on, so it publishes
    cfg.write_text(toml(sync_cfg(broker, "dev-a")))
    r = a.app.enroller().enroll_resident("Barack Obama", "1-101", photo("obama_01.jpg"),
                                         Consent("site", "desk"))
    got = wait_for(lambda: b.app.store.find_residents(r.uid), 30, "the resident on B")
    assert b.app.store.template_count(("resident", got[0].id)) == 1
    out = ok(run_cli("consent", "withdraw", str(r.id), data=a.app.data_dir, config=cfg))
    assert f"resident #{r.id}" in out and "erased" in out
    assert a.app.store.template_count(("resident", r.id)) == 0
    wait_for(lambda: b.app.store.template_count(("resident", got[0].id)) == 0, 30,
             "the templates erased on B")
    assert b.app.store.find_residents(r.uid)[0].status == "active"  # the resident stays
    assert a.app.store.resident(r.id).status == "active"
    c = a.app.store.consent_of(r.id)
    assert c is not None and c.withdrawn_at is not None and not c.replicated
    shown = ok(run_cli("residents", "show", str(r.id), data=a.app.data_dir))
    assert "withdrawn" in shown and "site" in shown


def test_withdrawal_of_local_consent_erases_face_data_here_and_keeps_the_resident(app):
    from tests.conftest import enroll

    r = enroll(app, "Rose Leslie", "rose_leslie_01.jpg")  # no consent recorded: local
    assert app.store.consent_of(r.id) is None
    snap = app.recorder.record("gate", "access", "granted", f"resident #{r.id}",
                               read_image(FACES / "rose_leslie_02.jpg"), resident_id=r.id)
    assert (app.snapshot_dir / snap.snapshot).exists()
    files, scope = app.store.withdraw_consent(r.id)
    app.recorder.delete_files(files)
    assert scope is None and app.store.template_count(("resident", r.id)) == 0
    assert not (app.snapshot_dir / snap.snapshot).exists()
    assert app.store.resident(r.id).status == "active"
    assert [e.id for e in app.store.events(kind="access")] == [snap.id]  # the audit row stays
    c = app.store.consent_of(r.id)
    assert c is not None and c.withdrawn_at is not None and not c.replicated
    app.directory.refresh()
    assert ("resident", r.id) not in app.directory.gallery.owners()


def test_a_salvaged_store_keeps_the_consents_with_the_residents(tmp_path):
    import numpy as np

    from gatectl.store import Store
    from gatectl.store.salvage import salvage

    old = Store(tmp_path / "old.db")
    v = np.zeros(4, "f4")
    v[0] = 1
    r = old.add_resident("Li Lei", "1", [(v, 0.9)], "m1", Consent("site", "desk"))
    old.close()
    fresh = Store(tmp_path / "new.db")
    line, identities = salvage(tmp_path / "old.db", fresh)
    assert identities and "1 consent" in line
    c = fresh.consent_of(r.id)
    assert c is not None and (c.scope, c.by) == ("site", "desk") and c.replicated
    fresh.close()
