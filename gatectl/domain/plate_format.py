"""Chinese licence-plate formats (GA 36-2018 and the new-energy supplement), as a grammar.

Used twice: the recogniser may only emit strings this grammar can complete (so 'O'/'I', which
plates never use, or a separator, cannot appear), and a reading is only acted on when it is a
whole plate. Each format is a sequence of character classes, one per position.
"""

from __future__ import annotations

from functools import lru_cache

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O
DIGITS = "0123456789"
ALNUM = LETTERS + DIGITS

FORMATS: dict[str, list[str]] = {
    "ordinary": [PROVINCES, LETTERS] + [ALNUM] * 5,
    "police": [PROVINCES, LETTERS] + [ALNUM] * 4 + ["警"],
    "coach": [PROVINCES, LETTERS] + [ALNUM] * 4 + ["学"],
    "consulate": [PROVINCES, LETTERS] + [ALNUM] * 4 + ["领"],
    "hk_macau": [PROVINCES, "Z"] + [ALNUM] * 4 + ["港澳"],
    "trailer": [PROVINCES, LETTERS] + [ALNUM] * 4 + ["挂"],
    "new_energy_small": [PROVINCES, LETTERS, "DF", ALNUM] + [DIGITS] * 4,
    "new_energy_large": [PROVINCES, LETTERS] + [DIGITS] * 5 + ["DF"],
    "armed_police": ["W", "J"] + [DIGITS] * 2 + [ALNUM] * 5,
}
CHARSET = "".join(sorted(set("".join("".join(classes) for classes in FORMATS.values()))))


def _fits(text: str, classes: list[str]) -> bool:
    """Every character of ``text`` is allowed at its position (a prefix of the format)."""
    return len(text) <= len(classes) and all(c in classes[i] for i, c in enumerate(text))


@lru_cache(maxsize=4096)  # the beam search asks for the same few prefixes on every frame
def allowed_next(prefix: str) -> frozenset[str]:
    """Characters that can follow ``prefix`` in some format."""
    return frozenset(c for f in FORMATS.values() if len(prefix) < len(f) and _fits(prefix, f)
                     for c in f[len(prefix)])


def kind_of(plate: str) -> str | None:
    """The format a whole plate matches (more specific first), or None: not a plate."""
    for kind in ("police", "coach", "consulate", "hk_macau", "trailer", "armed_police",
                 "new_energy_small", "new_energy_large", "ordinary"):
        if len(plate) == len(FORMATS[kind]) and _fits(plate, FORMATS[kind]):
            return kind
    return None


def is_plate(text: str) -> bool:
    return kind_of(text) is not None


def normalise(text: str) -> str:
    """What a technician types into `gatectl plates add`: spaces, dots and dashes dropped,
    letters upper-case ('粤b 12345' -> '粤B12345')."""
    return "".join(c for c in text.upper() if c not in " ·.-_")
