"""Enrollment: photos -> checked templates -> a resident (or a watchlist entry) in the store.

Every photo must show exactly one usable, live face, all photos must show the same person, and
that person must not already be enrolled under another name: a duplicate would make the 1:N
search ambiguous for both people. Photos are discarded once their templates exist unless the
config asks to keep them (GB/T 35273 data minimisation).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gatectl.config.site import EnrollmentConfig, StorageConfig
from gatectl.core.errors import GatectlError, InvariantError
from gatectl.core.safe_text import shown
from gatectl.domain.consent import Consent
from gatectl.domain.face_match import duplicate_of, same_person
from gatectl.domain.records import OwnerKey, Resident, WatchEntry
from gatectl.people.directory import Directory, select_templates
from gatectl.store import Store
from gatectl.store.recorder import encode_jpeg, write_file_durably
from gatectl.vision.face.analyzer import FaceAnalyzer

NAME_MAX = 64  # characters of a name (residents, watchlist entries)
UNIT_MAX = 32  # "3-2-1501", "Block B / 12F / 1203"
REASON_MAX = 200  # a watchlist reason, a plate note
MAX_TEMPLATES = 20  # per resident: more photos add little and slow every 1:N search


class EnrollmentError(GatectlError):
    """Why a photo or an enrollment was refused: one line for the technician."""


class DuplicateFace(EnrollmentError):
    """The face is already someone else's; ``owner`` and ``score`` say whose and how close, for
    callers that must not show the name (the sync log)."""

    def __init__(self, message: str, owner: OwnerKey | None, score: float):
        super().__init__(message)
        self.owner = owner
        self.score = score


def check_duplicate(
    directory: Directory,
    templates: list[tuple[np.ndarray, float]],
    threshold: float,
    same: OwnerKey | None = None,
) -> None:
    """DuplicateFace if a template matches anyone enrolled (resident or watchlist entry) other
    than ``same`` at ``threshold`` or closer. The one duplicate rule for every way a resident's
    template arrives: photos here, the centre's changes in `gatectl.sync.enrollment`."""
    directory.refresh()
    for vec, _ in templates:
        dup = duplicate_of(directory.gallery.match(vec), threshold, same)
        if dup is None:
            continue
        owner, score = dup
        if owner is None:
            raise DuplicateFace(
                f"this face also matches another enrolled person (similarity {score:.2f})",
                None,
                score,
            )
        kind, oid = owner
        who = directory.residents.get(oid) if kind == "resident" else directory.watch.get(oid)
        desc = (
            f"resident #{oid} {shown(who.name)} ({shown(who.unit)})"
            if isinstance(who, Resident)
            else f"watchlist entry #{oid} {shown(who.name) if who else '?'}"
        )
        hint = (
            f"; to give them these photos: gatectl enroll --resident {oid}"
            if kind == "resident"
            else ""
        )
        raise DuplicateFace(
            f"this face already belongs to {desc} (similarity {score:.2f}){hint}",
            owner,
            score,
        )


def checked_text(what: str, value: str | None, limit: int, required: bool = True) -> str:
    """A name, unit or reason as it will be stored: trimmed, printable, at most ``limit``
    characters; not blank if ``required``. It reaches guard screens, logs and the centre, where
    a control character or escape forges lines and a blank one names no one."""
    text = (value or "").strip()
    if not text and required:
        raise EnrollmentError(f"{what}: empty; give a real value")
    if len(text) > limit:
        raise EnrollmentError(f"{what}: {len(text)} characters, at most {limit}: {shown(text, 40)}")
    if not all(ch.isprintable() for ch in text):
        raise EnrollmentError(
            f"{what}: contains a control or non-printable character: {shown(text, 60)}"
        )
    return text


@dataclass(frozen=True)
class Sample:
    label: str  # file name or "camera lobby frame 3", for messages
    image: np.ndarray


def extract_template(analyzer: FaceAnalyzer, sample: Sample) -> tuple[np.ndarray, float]:
    faces = analyzer.analyze(sample.image)
    if not faces:
        raise EnrollmentError(f"{sample.label}: no face found")
    if len(faces) > 1:
        raise EnrollmentError(f"{sample.label}: {len(faces)} faces found, need exactly one person")
    obs = faces[0]
    if not obs.quality.ok:
        raise EnrollmentError(f"{sample.label}: {obs.quality.problem}")
    if obs.too_close:
        raise EnrollmentError(
            f"{sample.label}: face too close to the edges of the picture for the liveness check; "
            "use a photo that shows the head and shoulders"
        )
    if not analyzer.is_live(obs):
        raise EnrollmentError(
            f"{sample.label}: spoof suspected (liveness {obs.p_real:.2f}); photograph the person, "
            "not a picture or screen"
        )
    if obs.embedding is None:  # the analyzer embeds every live face of usable quality
        raise InvariantError(f"{sample.label}: a live face without an embedding")
    return obs.embedding, obs.quality.score


class Enroller:
    """Enrollment with its parts given, not looked up: the analyzers, the directory it checks
    duplicates against, the store it writes to and where kept photos go. `runtime.app.App.enroller`
    assembles one; the reference centre and the tests use the same."""

    def __init__(self, analyzer: FaceAnalyzer, watch_analyzer: Callable[[], FaceAnalyzer],
                 directory: Directory, store: Store, delete_files: Callable[[list[Path]], None],
                 model_id: str, cfg: EnrollmentConfig, storage: StorageConfig, snapshot_dir: Path):
        """``watch_analyzer`` builds the analyzer of watchlist photos (no liveness rule) when one
        is first needed; ``delete_files`` removes replaced photos from the snapshot folder."""
        self.analyzer = analyzer
        self._watch_analyzer = watch_analyzer
        self.directory = directory
        self.store = store
        self.delete_files = delete_files
        self.model_id = model_id
        self.cfg = cfg
        self.storage = storage
        self.snapshot_dir = snapshot_dir

    def templates(self, samples: list[Sample]) -> list[tuple[np.ndarray, float]]:
        if not samples:
            raise EnrollmentError("no photo given: use --photo FILE (repeatable) or --camera NAME")
        templates = [extract_template(self.analyzer, s) for s in samples]
        thr = self.cfg.duplicate_threshold
        for i in range(1, len(templates)):
            ok, sim = same_person([templates[0][0]], templates[i][0], thr)
            if not ok:
                raise EnrollmentError(
                    f"{samples[i].label}: does not look like the person in {samples[0].label} "
                    f"(similarity {sim:.2f} < {thr:.2f})"
                )
        return select_templates(templates, self.cfg.keep_templates)

    def _check_duplicate(self, templates: list[tuple[np.ndarray, float]],
                         own: tuple[str, int] | None = None) -> None:
        """Refuse a face that is someone else's; ``own`` is the resident being given more photos."""
        check_duplicate(self.directory, templates, self.cfg.duplicate_threshold, same=own)

    def _check_same_person(self, resident: Resident, templates: list[tuple[np.ndarray, float]],
                           samples: list[Sample]) -> None:
        """New photos for a resident must show them (against their templates of this model)."""
        model = self.model_id
        old = [v for v, _, m in self.store.templates_of(("resident", resident.id)) if m == model]
        if not old:
            return  # only templates of another model (or none): nothing to compare with
        thr = self.cfg.duplicate_threshold
        for (vec, _), sample in zip(templates, samples):
            ok, best = same_person(old, vec, thr)
            if not ok:
                raise EnrollmentError(
                    f"{sample.label}: does not look like resident #{resident.id} "
                    f"{shown(resident.name)} "
                    f"(similarity {best:.2f} < {thr:.2f}); if their old photos are "
                    "wrong, --replace-photos"
                )

    def _keep_photos(self, resident: Resident, samples: list[Sample]) -> None:
        if not self.storage.keep_enrollment_photos:
            return
        stamp = time.time_ns()  # never the name of an older photo of theirs
        for i, s in enumerate(samples):
            rel = f"enrollment/{resident.uid}/{stamp}-{i}.jpg"
            write_file_durably(self.snapshot_dir / rel,
                               encode_jpeg(s.image, self.storage.snapshot_jpeg_quality))
            self.store.add_enrollment_photo(resident.id, rel)

    def enroll_resident(self, name: str, unit: str, samples: list[Sample],
                        consent: Consent | None = None) -> Resident:
        """``consent``: the person's consent to face recognition, recorded with the resident
        (None: none recorded, which keeps the templates on this device, like ``local``)."""
        name, unit = checked_text("name", name, NAME_MAX), checked_text("unit", unit, UNIT_MAX)
        templates = self.templates(samples)
        self._check_duplicate(templates)
        resident = self.store.add_resident(name, unit, templates, self.model_id, consent)
        self._keep_photos(resident, samples)
        self.directory.refresh()
        return resident

    def add_photos(
        self, resident: Resident, samples: list[Sample], replace: bool = False
    ) -> Resident:
        """Re-enroll: more photos of an enrolled resident, or with ``replace`` new ones instead
        of all the old (a changed face, templates of a previous model). Their inactivity clock
        restarts; a suspension stays (that is the management's, see `residents reactivate`)."""
        templates = self.templates(samples)
        owner = ("resident", resident.id)
        if not replace:
            have = self.store.template_count(owner)
            if have + len(templates) > MAX_TEMPLATES:
                raise EnrollmentError(
                    f"resident #{resident.id} has {have} template(s), at most {MAX_TEMPLATES}: "
                    "use --replace-photos"
                )
            self._check_same_person(resident, templates, samples)
        self._check_duplicate(templates, own=owner)
        files = self.store.add_templates(resident.id, templates, self.model_id, replace=replace)
        self.delete_files(files)
        self._keep_photos(resident, samples)
        self.directory.refresh()
        return self.store.resident(resident.id)

    def add_watch(self, name: str, reason: str, samples: list[Sample]) -> WatchEntry:
        """A person to alert on. No liveness rule: the photo usually comes from the police or a
        printed notice. It may well show someone also enrolled (the gate then alerts for that
        resident), but not someone already listed: a face listed twice is one entry too many."""
        analyzer = self._watch_analyzer()
        name, reason = (
            checked_text("name", name, NAME_MAX),
            checked_text("reason", reason, REASON_MAX, False),
        )
        templates = [extract_template(analyzer, s) for s in samples]
        d = self.directory
        d.refresh()
        thr = self.cfg.duplicate_threshold
        for (vec, _), sample in zip(templates, samples):
            for (kind, oid), score in d.gallery.owners_above(vec, thr):
                if kind == "watchlist":
                    w = d.watch.get(oid)
                    raise EnrollmentError(
                        f"{sample.label}: this face is already on the watchlist as entry #{oid} "
                        f"{shown(w.name) if w else '?'} (similarity "
                        f"{score:.2f}); remove that entry "
                        "first to replace it")
        entry = self.store.add_watch(name, reason, None, templates, self.model_id)
        self.directory.refresh()
        return entry
