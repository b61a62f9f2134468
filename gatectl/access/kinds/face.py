"""A face the face gate matched: the gate already knows who it is (``resident_id``)."""

from __future__ import annotations

from gatectl.access.kinds import Claim, KindContext
from gatectl.domain.credentials import Presented


class Face:
    def claim(self, ctx: KindContext, p: Presented, expected: int | None) -> Claim:
        if p.resident_id is None:
            return Claim(refused="unknown face")
        if ctx.store.refuses_face(p.resident_id):  # no template should exist: never by face
            return Claim(refused="face recognition refused by the resident")
        return Claim(resident_id=p.resident_id)


KIND = Face()
