"""Where the centre keeps snapshot bytes: a folder by default, any object store behind the same
three calls (an S3-compatible one is described in docs/central.md: ``put`` is a PutObject of
the same key, ``get`` a GetObject, ``delete`` a DeleteObject; the database keeps only the key).

Keys are ``<site>/<device>/<event id>.jpg``, every part a checked token, so no input names a
path outside the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from gatectl.store.recorder import write_file_durably
from gatectl.sync.inbound import is_token


class SnapshotStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Durable when it returns (the event's receipt follows it)."""

    def get(self, key: str) -> bytes | None: ...

    def delete(self, key: str) -> None: ...


def snapshot_key(site: str, device: str, event_id: str) -> str:
    for part in (site, device, event_id):
        if not is_token(part) or part in (".", ".."):
            raise ValueError(f"not a token: {part[:64]!r}")
    return f"{site}/{device}/{event_id}.jpg"


class FolderStore:
    """Files under one folder: written to a temporary name, fsynced, renamed (a crash leaves
    the old file or none, never half of one)."""

    def __init__(self, root: Path):
        self.root = root

    def put(self, key: str, data: bytes) -> None:
        write_file_durably(self.root / key, data)

    def get(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)
