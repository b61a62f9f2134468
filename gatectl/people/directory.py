"""The gate's view of who is who: the face gallery plus the resident and watchlist records.

Loaded from the store and reloaded whenever the store's directory revision changes (an
enrollment, removal or status change made by the CLI or the central server). A reload builds a
new gallery and record maps, then swaps them in; the frame loop keeps matching meanwhile.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

import numpy as np

from gatectl.domain.records import OwnerKey, Resident, WatchEntry
from gatectl.store import Store
from gatectl.vision.face.gallery import Gallery

log = logging.getLogger("gatectl.identities")


# Two enrollment photos this similar are the same picture twice (a burst, a re-encode): the
# second adds nothing to the gallery but rows.
DUPLICATE_TEMPLATE = 0.92


def select_templates(templates: list[tuple[np.ndarray, float]], keep: int,
                     duplicate: float = DUPLICATE_TEMPLATE) -> list[tuple[np.ndarray, float]]:
    """The ``keep`` best templates (by quality score) of one person, skipping near-copies of one
    already kept. Several templates cover what one photo misses (glasses, light, a slight turn);
    more than a few only add rows, and so chances for a stranger to resemble one of them."""
    kept: list[tuple[np.ndarray, float]] = []
    for vec, q in sorted(templates, key=lambda t: -t[1]):
        if len(kept) == keep:
            break
        if all(float(vec @ k) < duplicate for k, _ in kept):
            kept.append((vec, q))
    return kept


def same_face_groups(gallery: Gallery, threshold: float) -> list[list[OwnerKey]]:
    """Group each watchlist entry with the other entries, and at most one resident, whose
    templates score >= ``threshold`` against its own (the enrollment duplicate rule): the same
    person listed twice, or a resident also listed by photo. Without this the margin rule sees
    the same face under two entries as two close people and says 'ambiguous' instead of alerting.
    Two residents are never merged through a watchlist photo that resembles both: the margin
    between them must keep applying."""
    parent: dict[OwnerKey, OwnerKey] = {}
    resident_of: dict[OwnerKey, OwnerKey] = {}  # group root -> its resident

    def find(o: OwnerKey) -> OwnerKey:
        parent.setdefault(o, o)
        while parent[o] != o:
            parent[o] = parent[parent[o]]
            o = parent[o]
        return o

    for w in gallery.owners():
        if w[0] != "watchlist":
            continue
        for vec in gallery.vectors(w):
            for other, _ in gallery.owners_above(vec, threshold):
                if other[0] == "resident":
                    resident_of.setdefault(other, other)
                a, b = find(w), find(other)
                if a == b:
                    continue
                ra, rb = resident_of.get(a), resident_of.get(b)
                if ra is not None and rb is not None:
                    log.warning(
                        "watchlist entry #%d resembles residents #%d and #%d; linked to #%d only",
                        w[1],
                        ra[1],
                        rb[1],
                        ra[1],
                    )
                    continue
                parent[b] = a
                if rb is not None:
                    resident_of[a] = rb
    groups: dict[OwnerKey, list[OwnerKey]] = {}
    for o in parent:
        groups.setdefault(find(o), []).append(o)
    return [g for g in groups.values() if len(g) > 1]


class Directory:
    def __init__(self, store: Store, model_id: str, dim: int, link_threshold: float = 0.40):
        self.store = store
        self.model_id = model_id
        self.dim = dim
        self.link_threshold = link_threshold
        self.gallery = Gallery(dim)
        self.residents: dict[int, Resident] = {}
        self.watch: dict[int, WatchEntry] = {}
        self.watched_residents: dict[int, WatchEntry] = {}
        self.rev = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Reload if the store changed since the last load; True if it did."""
        rev = self.store.directory_rev()
        if rev == self.rev:
            return False
        gallery = Gallery(self.dim)
        gallery.replace_all(self.store.iter_templates(self.model_id))
        gallery.link(same_face_groups(gallery, self.link_threshold))
        residents = {r.id: r for r in self.store.residents()}
        watch = {w.id: w for w in self.store.watch_entries()}
        self.gallery, self.residents, self.watch = gallery, residents, watch
        self.watched_residents = {
            w.resident_id: w for w in watch.values() if w.resident_id is not None
        }
        self.rev = rev
        log.info("directory loaded: %d residents, %d watchlist, %d templates (rev %d)",
                 len(residents), len(watch), len(gallery), rev)
        return True

    def note_seen(self, rid: int, when: float) -> None:
        """Keep the cached last-seen time true after a grant this process recorded itself."""
        r = self.residents.get(rid)
        if r is not None:
            self.residents[rid] = replace(r, last_seen_at=when)

    def name_of(self, owner: OwnerKey | None) -> str | None:
        if owner is None:
            return None
        kind, oid = owner
        rec = self.residents.get(oid) if kind == "resident" else self.watch.get(oid)
        return rec.name if rec else None

    def start(self, interval_s: float = 1.0) -> None:
        """Poll the store's revision in a background thread (daemon mode)."""
        self.refresh()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # keep serving the last good directory
                    log.exception("directory reload failed; keeping the previous one")

        self._thread = threading.Thread(target=loop, name="directory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
