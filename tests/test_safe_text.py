"""Outside text is shown as one bounded, printable line (log forging, terminal escapes)."""

from gatectl.core.safe_text import shown


def test_printable_names_in_any_script_pass_unchanged():
    assert shown("王芳 Rose Leslie") == "王芳 Rose Leslie"


def test_newline_cannot_forge_a_log_line():
    out = shown("k1\n2026-12-02 INFO granted Barack Obama")
    assert "\n" not in out and out.startswith("k1\\x0a")


def test_ansi_escape_and_lone_surrogate_are_escaped():
    out = shown("\x1b[2J\ud800x\u2028")
    assert out == "\\x1b[2J\\ud800x\\u2028"
    out.encode("utf-8")  # a lone surrogate would raise here


def test_backslash_is_doubled_so_an_escape_cannot_be_faked():
    assert shown("a\\x0ab") == "a\\\\x0ab"


def test_long_text_is_cut_with_a_marker():
    out = shown("x" * 1_000_000, limit=10)
    assert out == "xxxxxxxxxx...(+999990 chars)"


def test_non_strings_are_shown_too():
    assert shown(2**64) == "18446744073709551616"
