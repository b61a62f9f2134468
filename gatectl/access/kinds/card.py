"""A card as the reader reports it: the number in hex (the raw card data, most significant bit
first, as OSDP and Wiegand readers hand it over) and its bit length."""

from __future__ import annotations

from gatectl.access.kinds import Claim, KindContext
from gatectl.domain.credentials import Presented, card_number


class Card:
    def claim(self, ctx: KindContext, p: Presented, expected: int | None) -> Claim:
        number = card_number(p.value, p.bits)
        if number is None:
            return Claim(refused="card unreadable")
        rid = ctx.store.card_owner(number, p.bits)
        return Claim(refused="unknown card") if rid is None else Claim(resident_id=rid)


KIND = Card()
