"""The one base of every error gatectl reports as a line to a person, never as a traceback.

A bad config key, a missing model file, a store that refuses writes, an unreadable photo, a
board that does not answer: each is a `GatectlError` whose message names what is wrong and
where. The CLI prints those as ``gatectl: <line>`` (exit 2); anything else is a bug, reported in
one line as an internal error. New floors subclass this instead of growing a list of classes.
"""

from __future__ import annotations


class GatectlError(Exception):
    """A refusal with a one-line (or one-line-per-problem) message for the technician."""


class UsageError(GatectlError):
    """A bad command-line argument (or one that names nothing in the config, like `--gate`)."""


class InvariantError(RuntimeError):
    """A state gatectl's own code must never reach: a bug, raised where an ``assert`` would be
    skipped under ``python -O`` and the code would go on (a grant with no resident)."""
