"""Text that came from outside (MQTT payloads, files, the CLI, a camera's plate reading), made
safe to log or print.

A name, uid, key id or reason is attacker-controlled: a newline in it forges a second log line
(and a journald entry), an ANSI escape drives the technician's terminal, a lone surrogate makes
the logging handler raise, and a megabyte of it fills the journal. `shown()` is the one place
such text is turned into something printable, bounded and unambiguous; every log call and every
CLI line that carries outside text goes through it.
"""

from __future__ import annotations

DEFAULT_LIMIT = 120


def shown(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as one printable line of at most ``limit`` characters (plus a cut marker).

    Printable characters (any script: names are often Chinese) pass unchanged; control
    characters, line and paragraph separators, escapes and unpaired surrogates become visible
    ``\\xNN`` / ``\\uNNNN`` escapes, and a backslash is doubled so an escape cannot be faked.
    """
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    out = []
    for ch in text[:limit]:
        if ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    if cut:
        out.append(f"...(+{len(text) - limit} chars)")
    return "".join(out)
