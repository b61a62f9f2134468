"""journald log lines: every line of a record, traceback included, at the record's priority."""

from __future__ import annotations

import io
import logging

from gatectl.runtime.systemd import JournalFormatter


def journal_lines(emit) -> list[str]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter())
    log = logging.getLogger("gatectl.test_journal")
    log.addHandler(handler)
    log.propagate = False
    try:
        emit(log)
    finally:
        log.removeHandler(handler)
    return out.getvalue().splitlines()


def test_a_logged_exception_keeps_its_traceback_at_the_error_priority():
    def emit(log: logging.Logger) -> None:
        try:
            {}["door"]
        except KeyError:
            log.exception("gate %s: frame %d failed", "lobby", 7)

    lines = journal_lines(emit)
    assert lines[0] == "<3>gatectl.test_journal: gate lobby: frame 7 failed"
    assert lines[1] == "<3>Traceback (most recent call last):"
    assert any(line.startswith("<3>") and '{}["door"]' in line for line in lines)
    assert lines[-1] == "<3>KeyError: 'door'"
    assert all(line.startswith("<3>") for line in lines)


def test_a_plain_line_is_one_journal_line():
    assert journal_lines(lambda log: log.warning("fire alarm input %s ACTIVE", "fa")) == [
        "<4>gatectl.test_journal: fire alarm input fa ACTIVE"]
