"""Card and PIN readers on RS-485 speaking OSDP (IEC 60839-11-5), and the privacy notice.

One ``[[readers]]`` entry per reader. Readers on the same ``port`` share one bus (one control
panel thread drives them all, by address), so they must agree on ``baud``. The Secure Channel
is on by default: the reader's own key (SCBK, 16 bytes) is in the config as hex or in a file,
and a reader that cannot prove it holds that key is refused, never trusted in the clear.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from gatectl.config.base import Name, Strict

BAUDS = (9600, 19200, 38400, 57600, 115200)
SCBK_HEX = re.compile(r"^[0-9A-Fa-f]{32}$")


def parse_scbk(text: str, origin: str) -> bytes:
    """16 bytes from 32 hex digits (spaces, colons allowed between them); ValueError naming
    ``origin`` otherwise. Never echoes the key itself."""
    digits = re.sub(r"[\s:]", "", text)
    if not SCBK_HEX.match(digits):
        raise ValueError(f"{origin}: an SCBK is 16 bytes written as 32 hex digits")
    return bytes.fromhex(digits)


class ReaderConfig(Strict):
    """One OSDP reader (a peripheral device, PD) at an address on a serial port."""

    name: Name = Field(description="The reader's name: events' source, logs.")
    door: Name = Field(description="The door this reader is for (a name in [[doors]]).")
    port: str = Field(
        min_length=1, max_length=256, description="Serial device of the RS-485 adapter."
    )
    baud: int = Field(
        9600, ge=9600, le=115200, description="Line speed: 9600, 19200, 38400, 57600 or 115200."
    )
    address: int = Field(0, ge=0, le=126, description="The reader's OSDP address, 0-126.")
    secure: bool = Field(
        True,
        description="Secure Channel (AES-128) required; off only for a bench reader that "
        "cannot do it - card numbers then cross the wire in the clear.",
    )
    scbk: str | None = Field(
        None,
        min_length=32,
        max_length=64,
        description="The reader's Secure Channel base key: 32 hex digits (16 bytes).",
    )
    scbk_file: Path | None = Field(
        None, description="File holding the SCBK as 32 hex digits (instead of scbk)."
    )
    install_mode: bool = Field(
        False,
        description="Accept a factory-fresh reader's default key once and give it this SCBK "
        "(KEYSET); turn off again right after (README: installing a reader).",
    )
    pin_timeout_s: float = Field(
        10.0, ge=1, le=60, description="Keys pressed further apart than this start a new PIN."
    )
    pin_max_digits: int = Field(
        8, ge=4, le=12, description="Longest PIN accepted; more digits discard the entry."
    )

    @field_validator("baud")
    @classmethod
    def _baud(cls, baud: int) -> int:
        if baud not in BAUDS:
            raise ValueError(f"baud must be one of {', '.join(map(str, BAUDS))}")
        return baud

    @field_validator("scbk")
    @classmethod
    def _scbk(cls, text: str | None) -> str | None:
        if text is not None:
            parse_scbk(text, "scbk")
        return text

    @model_validator(mode="after")
    def _key(self) -> ReaderConfig:
        if self.scbk is not None and self.scbk_file is not None:
            raise ValueError("scbk and scbk_file: give one")
        if self.secure and self.scbk is None and self.scbk_file is None:
            raise ValueError(
                "secure = true needs scbk or scbk_file (the reader's 16-byte key); "
                "README: installing a reader"
            )
        if self.install_mode and not self.secure:
            raise ValueError("install_mode only makes sense with secure = true")
        return self

    def key(self) -> bytes | None:
        """The SCBK (read from ``scbk_file`` if that is where it is); None without a Secure
        Channel. ValueError naming the key path for an unreadable or malformed file."""
        if not self.secure:
            return None
        if self.scbk is not None:
            return parse_scbk(self.scbk, "scbk")
        path = Path(self.scbk_file or "")
        try:
            text = path.read_text(encoding="ascii", errors="strict")[:256]
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"scbk_file: cannot read {path} ({exc.__class__.__name__})") from None
        return parse_scbk(text, f"scbk_file {path}")


class PrivacyConfig(Strict):
    """What the door tells people about face recognition (the 2025 Measures: a visible notice
    that it is in use, and the other way in)."""

    notice: bool = Field(
        True, description="Show the privacy notice on the door display (when one is configured)."
    )
    notice_text: str = Field(
        "Face recognition is in use at this door. You may use a card, PIN or visitor code "
        "instead; ask the management office.",
        min_length=1,
        max_length=500,
        description="The notice: that face recognition is in use, and the alternative.",
    )
    notice_every_s: float = Field(
        600.0, ge=30, le=86400, description="How often the notice is shown again, 30 s-1 day."
    )

