"""A PIN typed on a keypad: checked against the resident a card just named (``card+pin``), or,
at a PIN-only door, against every resident's PIN - each check a slow hash, so a PIN-only door
suits a small set of PIN holders (`MAX_SCAN`); wrong PINs lock the door's keypad out a while."""

from __future__ import annotations

from gatectl.access.kinds import Claim, KindContext
from gatectl.access.pins import PIN_MAX, PIN_MIN, verify_pin
from gatectl.domain.credentials import Presented

MAX_SCAN = 32  # PIN-only identification: at most this many hashes (~40 ms each) per PIN typed


class Pin:
    def claim(self, ctx: KindContext, p: Presented, expected: int | None) -> Claim:
        now = p.t
        if ctx.pins.locked(now):
            ctx.pins.refused_locked += 1
            return Claim(refused="pin locked out: too many wrong PINs")
        pin = p.value
        if not (pin.isascii() and pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX):
            return Claim(refused="pin malformed")
        hashes = ctx.store.pin_hashes(expected) if expected is not None else ctx.store.pin_hashes()
        if expected is None and len(hashes) > MAX_SCAN:
            return Claim(refused="pin alone cannot identify: show a card first")
        for rid, stored in hashes.items():
            if verify_pin(pin, stored):
                return Claim(resident_id=rid)
        locked = ctx.pins.failed(now)
        return Claim(refused="wrong pin; keypad locked out" if locked else "wrong pin")


KIND = Pin()
