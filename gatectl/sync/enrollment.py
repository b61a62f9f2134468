"""Residents and watchlist entries between the centre and the devices, both ways.

Every change carries the person's ``uid`` (global) and a ``version``; a device applies a change
only when its version is newer than what it holds (resident, watchlist entry or tombstone), so
re-delivered, reordered or echoed messages are harmless. A deletion leaves a tombstone and
erases the templates and snapshots at once. Templates travel as float32 vectors with the id of
the model that made them; a template from another model is refused (its similarities would be
meaningless), with that reason.

Payload (JSON), resident::

    {"v": 1, "type": "resident", "op": "upsert" | "delete", "uid": "...", "version": 3,
     "name": "...", "unit": "...", "status": "active" | "suspended",
     "templates": [{"model": "mobilefacenet-...", "dim": 128, "quality": 0.9, "emb": "<base64 f32 LE>"}],
     "origin": "<device id or 'central'>"}

Watchlist entries use ``"type": "watchlist"`` with ``name``, ``reason`` and ``templates``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gatectl.store import Store


class EnrollRejected(Exception):
    """A change this device cannot apply; one line saying why."""


def encode_templates(templates: list[tuple[np.ndarray, float]], model_id: str) -> list[dict]:
    return [{"model": model_id, "dim": int(v.shape[0]), "quality": round(float(q), 4),
             "emb": base64.b64encode(np.asarray(v, "<f4").tobytes()).decode()} for v, q in templates]


def decode_templates(items: object, model_id: str, dim: int) -> list[tuple[np.ndarray, float]]:
    if not isinstance(items, list):
        raise EnrollRejected("templates must be a list")
    out = []
    for i, t in enumerate(items):
        if not isinstance(t, dict):
            raise EnrollRejected(f"templates[{i}] must be an object")
        if t.get("model") != model_id:
            raise EnrollRejected(f"templates[{i}]: made by model '{t.get('model')}', this device uses "
                                 f"'{model_id}'; re-enroll from photos")
        try:
            v = np.frombuffer(base64.b64decode(t["emb"], validate=True), "<f4")
            q = float(t.get("quality", 1.0))
        except (KeyError, ValueError, TypeError) as exc:
            raise EnrollRejected(f"templates[{i}]: bad embedding ({exc})") from None
        if v.shape[0] != dim or not np.all(np.isfinite(v)):
            raise EnrollRejected(f"templates[{i}]: {v.shape[0]} values, expected {dim} finite floats")
        out.append((v / max(float(np.linalg.norm(v)), 1e-12), q))
    return out


def resident_payload(store: Store, uid: str, origin: str) -> dict | None:
    """The current state of a resident (or its tombstone), as published up; None if unknown."""
    rows = store.find_residents(uid)
    if rows:
        r = rows[0]
        templates = store.templates_of(("resident", r.id))
        model = templates[0][2] if templates else ""
        version = store.version_of(uid)[1]
        return {"v": 1, "type": "resident", "op": "upsert", "uid": r.uid, "version": version, "name": r.name,
                "unit": r.unit, "status": r.status, "origin": origin,
                "templates": encode_templates([(v, q) for v, q, _ in templates], model)}
    version = store.tombstone_version(uid)
    if version is None:
        return None
    return {"v": 1, "type": "resident", "op": "delete", "uid": uid, "version": version, "origin": origin}


def parse(payload: bytes) -> dict:
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnrollRejected(f"not JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("v") != 1:
        raise EnrollRejected("not a v1 enrollment object")
    for key, kind in (("uid", str), ("version", int), ("op", str), ("type", str)):
        if not isinstance(body.get(key), kind) or isinstance(body.get(key), bool):
            raise EnrollRejected(f"field '{key}' missing or not {kind.__name__}")
    if body["type"] not in ("resident", "watchlist") or body["op"] not in ("upsert", "delete"):
        raise EnrollRejected(f"unknown change {body['type']}/{body['op']}")
    return body


class Replicator:
    """Applies enrollment changes to this device's store."""

    def __init__(self, store: Store, model_id: str, dim: int, delete_files: Callable[[list[Path]], None]):
        self.store = store
        self.model_id = model_id
        self.dim = dim
        self.delete_files = delete_files

    def apply(self, body: dict) -> str:
        """'applied' or 'ignored: ...'; raises EnrollRejected for a change that cannot be used."""
        uid, version = body["uid"], body["version"]
        held_kind, held = self.store.version_of(uid)
        if held_kind not in (None, "tombstone", body["type"]):
            raise EnrollRejected(f"uid {uid} is a {held_kind} here, not a {body['type']}")
        if version <= held:
            return f"ignored: version {version} is not newer than {held}"
        if body["op"] == "delete":
            self._delete(body["type"], uid, version)
            return "applied"
        templates = decode_templates(body["templates"], self.model_id, self.dim) if "templates" in body else None
        if body["type"] == "resident":
            if held_kind != "resident" and not templates:
                raise EnrollRejected(f"new resident {uid} has no templates")
            status = body.get("status", "active")
            if status not in ("active", "suspended"):
                raise EnrollRejected(f"unknown status {status!r}")
            self.store.replicate_resident(uid, version, str(body.get("name", "")), str(body.get("unit", "")),
                                          status, templates, self.model_id)
        else:
            if not templates:
                raise EnrollRejected(f"watchlist entry {uid} has no templates")
            self.store.replicate_watch(uid, version, str(body.get("name", "")), str(body.get("reason", "")),
                                       templates, self.model_id)
        return "applied"

    def _delete(self, kind: str, uid: str, version: int) -> None:
        if kind == "resident":
            for r in self.store.find_residents(uid):
                self.delete_files(self.store.remove_resident(r.id, publish=False))
        else:
            w = self.store.watch_by_uid(uid)
            if w is not None:
                self.store.remove_watch(w.id)
        self.store.tombstone(uid, kind, version)
