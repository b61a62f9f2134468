"""The gate's view of who is who: the face gallery plus the resident and watchlist records.

Loaded from the store and reloaded whenever the store's directory revision changes (an
enrollment, removal or status change made by the CLI or the central server). A reload builds a
new gallery and record maps, then swaps them in; the frame loop keeps matching meanwhile.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from gatectl.store import Resident, Store, WatchEntry
from gatectl.vision.gallery import Gallery, OwnerKey

log = logging.getLogger("gatectl.identities")


class Directory:
    def __init__(self, store: Store, model_id: str, dim: int):
        self.store = store
        self.model_id = model_id
        self.dim = dim
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
        residents = {r.id: r for r in self.store.residents()}
        watch = {w.id: w for w in self.store.watch_entries()}
        self.gallery, self.residents, self.watch = gallery, residents, watch
        self.watched_residents = {w.resident_id: w for w in watch.values() if w.resident_id is not None}
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
