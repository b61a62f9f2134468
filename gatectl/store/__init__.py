"""SQLite store: one connection, one writer lock, and the repositories of each concern.

Power cuts on SD cards are the normal case, so the connection runs WAL with synchronous=FULL
(a committed audit row survives), a busy timeout (the CLI and the daemon share the file) and
foreign keys on (`db`). Face templates live in their own table holding no name or unit (GB/T
35273: biometric data kept apart from identity data). Every write takes one lock, so the
daemon's threads share a single writer connection. The schema is `migrations`; the tables are
read and written through `residents`, `consent`, `events`, `vehicles`, `lists` (the centre's
plate entries and pass revocations) and `outbox`; a corrupt
file is handled by `salvage`; the event files beside the rows by `recorder`.
"""

from __future__ import annotations

from gatectl.store.analysis import Analysis
from gatectl.store.consent import Consents
from gatectl.store.credentials import Credentials
from gatectl.store.events import Events
from gatectl.store.lists import Lists
from gatectl.store.outbox import Outbox
from gatectl.store.residents import Residents
from gatectl.store.vehicles import Vehicles


class Store(Residents, Credentials, Consents, Events, Vehicles, Lists, Outbox, Analysis):
    """The device's store: one connection and writer lock (`db.StoreBase`) under the repositories
    of the tables each concern owns. One class for the callers, so a transaction may span
    repositories (an event row and its outbox row; an erasure and its tombstone)."""

