"""The one collector of the device's health: every I/O owner's ``health()`` read in one pass.

A section is one source (``controls``, ``clock``), one source per name (``cameras``, ``boards``,
``gates``), or sources merged into the top level (the recorder's ``events_unrecorded``,
``store_failing``, ``spool_bytes``, where the status topic has always carried them). ``fields``
keeps only what a remote reader needs from a chatty source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gatectl.core.health import HealthSource, pick

TOP_LEVEL = ""  # the section of a source whose fields go to the top level


class HealthCollector:
    def __init__(self) -> None:
        self._entries: list[Callable[[dict[str, Any]], None]] = []

    def value(self, key: str, read: Callable[[], Any]) -> None:
        """A top-level value that is no one's counter (uptime, free disk)."""
        self._entries.append(lambda out: out.__setitem__(key, read()))

    def section(self, section: str) -> None:
        """A per-name section that is present (empty) even with no source in it yet."""
        self._entries.append(lambda out: out.setdefault(section, {}))

    def add(
        self,
        section: str,
        source: HealthSource,
        name: str | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        """``name`` None: the section is this source; else the source is ``section[name]``.
        ``fields``: only these keys of its health (all when empty)."""

        def read(out: dict[str, Any]) -> None:
            h = source.health()
            h = pick(h, *fields) if fields else h
            if section == TOP_LEVEL:
                out.update(h)
            elif name is None:
                out[section] = h
            else:
                out.setdefault(section, {})[name] = h

        self._entries.append(read)

    def collect(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for read in self._entries:
            read(out)
        return out
