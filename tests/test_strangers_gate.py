"""The face gate hands unknown faces to the stranger book: real models on real photos, so the
clustering threshold (the gate's match threshold) is tried on real embeddings."""

from __future__ import annotations

from gatectl.sources.media import read_image
from tests.conftest import FACES, enroll


def pass_photo(gate, photo: str) -> list:
    gate.reset()
    img = read_image(FACES / photo)
    out = []
    for i in range(3):
        out += gate.process(img, i * 0.1)
    return out


def test_unknown_faces_of_one_person_share_an_anonymous_id(app):
    enroll(app, "biden", "biden_01.jpg")
    enroll(app, "kit", "kit_harington_01.jpeg")
    gate = app.gate(app.cfg.gates[0])
    events = {}
    for photo in ["obama_01.jpg", "obama_02.jpg", "obama_03.jpg", "alex_lacamoire_01.jpg",
                  "rose_leslie_01.jpg"]:
        [d] = pass_photo(gate, photo)
        assert d.reason == "unknown face"
        events[photo] = d.event.id
    stranger = {s["event_id"]: s["stranger"] for s in app.store.stranger_sightings(0)}
    ids = {photo: stranger.get(eid) for photo, eid in events.items()}
    assert ids["obama_01.jpg"] is not None  # seen again: the first sighting got the id too
    assert ids["obama_01.jpg"] == ids["obama_02.jpg"] == ids["obama_03.jpg"]
    assert ids["alex_lacamoire_01.jpg"] is None and ids["rose_leslie_01.jpg"] is None
    assert len(app.store.unknown_faces(0, 100)) == 5
    # a granted resident is never kept as a stranger
    [d] = pass_photo(gate, "biden_02.jpg")
    assert d.decision == "granted" and len(app.store.unknown_faces(0, 100)) == 5
