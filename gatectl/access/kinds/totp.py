"""A resident's rotating code (TOTP, RFC 6238: 30 s steps, 6 digits, HMAC-SHA1 - what every
authenticator app computes), shown as a QR code ``GT1:<resident uid>:<code>`` by the compound's
app. Verified offline against the enrolled secret within ``access.totp.window_steps`` steps of
the device clock; each step opens once (`Store.claim_totp_step`), so a code photographed over a
shoulder or replayed from a screenshot is refused."""

from __future__ import annotations

import hmac
import re

import pyotp

from gatectl.access.kinds import Claim, KindContext
from gatectl.domain.credentials import Presented

STEP_S = 30
_CODE = re.compile(r"GT1:([A-Za-z0-9_.:-]{1,64}):([0-9]{6})")


def matching_step(secret: str, code: str, now: float, window: int) -> int | None:
    """The newest step within ``window`` steps of ``now`` whose code is ``code``, or None."""
    totp = pyotp.TOTP(secret, interval=STEP_S)
    here = int(now // STEP_S)
    for step in range(here + window, here - window - 1, -1):
        if hmac.compare_digest(totp.at(step * STEP_S), code):
            return step
    return None


class ResidentCode:
    def claim(self, ctx: KindContext, p: Presented, expected: int | None) -> Claim:
        m = _CODE.fullmatch(p.value)
        if m is None:
            return Claim(refused="code malformed")
        uid, code = m.groups()
        rid = next((r.id for r in ctx.directory.residents.values() if r.uid == uid), None)
        secret = None if rid is None else ctx.store.totp_secret(rid)
        if rid is None or secret is None:
            return Claim(refused="code unknown")
        step = matching_step(secret, code, ctx.wall(), ctx.access.totp.window_steps)
        if step is None:
            return Claim(refused="code wrong or expired")
        if not ctx.store.claim_totp_step(rid, step, ctx.lock_wait_s):
            return Claim(refused="code already used")
        return Claim(resident_id=rid)


KIND = ResidentCode()
