"""A visitor pass read from a QR code: the centre's signature, site, door and validity are
checked here, offline; uses and revocations by the access point through the store."""

from __future__ import annotations

from gatectl.access.kinds import Claim, KindContext
from gatectl.access.passes import PassRefused, check_pass, read_pass
from gatectl.domain.credentials import Presented


class VisitorCode:
    def claim(self, ctx: KindContext, p: Presented, expected: int | None) -> Claim:
        try:
            vp = read_pass(p.value, ctx.keys)
            check_pass(vp, site=ctx.site, door=ctx.door, door_groups=ctx.access.door_groups,
                       now=ctx.wall())
        except PassRefused as exc:
            return Claim(refused=exc.reason, pass_id=exc.pass_id)
        return Claim(visitor=vp)


KIND = VisitorCode()
