"""One door's access decision for every credential: `AccessPoint.present`.

Whatever was shown - a face the face gate confirmed, a card, a PIN, a visitor pass, a rotating
code - the same steps run in the same order: the kind's plug-in says whom it names; the door's
policy for this time and this resident (`domain.door_policy`: schedules, groups, ``card+pin``
windows, the alternatives of a resident who refused face recognition) says whether that is
enough or a second factor is awaited; the resident rules (`domain.access`: suspended,
inactivity, watchlist) and anti-passback say whether they may pass; then one event with the
credential and the snapshot is recorded, and only then is the door controller asked to unlock.
Visitor passes count a use in the store after every other check passed.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gatectl.access.kinds import KINDS, Claim, KindContext, kind
from gatectl.access.passes import VisitorPass
from gatectl.access.pins import PinGuard
from gatectl.config.access import AccessConfig, DoorAccessConfig
from gatectl.control.controls import Controls
from gatectl.core.metrics import DECISIONS
from gatectl.core.refusals import TokenBucket
from gatectl.core.safe_text import shown
from gatectl.domain.access import EntryCheck, Verdict, decide_resident
from gatectl.domain.credentials import Outcome, Presented
from gatectl.domain.door_policy import Rule, for_resident, is_open, parse_rule
from gatectl.domain.records import Resident
from gatectl.people.directory import Directory
from gatectl.store import Store
from gatectl.store.recorder import EventRecorder

log = logging.getLogger("gatectl.access")

ANTI_PASSBACK = Verdict("denied", "anti-passback", "access")
VISITOR_ONLY = frozenset({"qr"})
# refusals that name no one (an unknown card, a forged or foreign code): events and log lines
# within this budget, counted beyond it - a screen cycling junk codes cannot fill the disk
NAMELESS_PER_S, NAMELESS_BURST = 1.0, 20


class AccessPoint:
    """The decision path of one door, shared by every source that reads credentials at it (the
    face gate's camera, card readers, keypads): a ``card+pin`` started on the reader and a face
    seen by the camera meet here. Thread-safe: sources call from their own threads."""

    def __init__(self, door: str, access: AccessConfig, store: Store, directory: Directory,
                 recorder: EventRecorder, controls: Controls, checks: list[EntryCheck],
                 reenroll_after_days: float, wall: Callable[[], float],
                 keys: dict[str, Ed25519PublicKey], site: str,
                 lock_wait_s: float | None = None):
        """``wall``: the trusted wall time rules use (schedules, pass validity, TOTP steps);
        ``keys``: the centre's public keys by key id (visitor passes)."""
        self.door = door
        self.access = access
        self.policy: DoorAccessConfig = access.door(door)
        self.store = store
        self.directory = directory
        self.recorder = recorder
        self.controls = controls
        self.checks = checks
        self.reenroll_after_days = reenroll_after_days
        self.wall = wall
        pin = access.pin
        self.ctx = KindContext(door, store, directory, access,
                               PinGuard(pin.max_failures, pin.window_s, pin.lockout_s),
                               keys, site, wall, lock_wait_s)
        self.lock_wait_s = lock_wait_s
        self._face_refused_rule = parse_rule(self.policy.face_refused)
        # resident -> (factors shown, monotonic time of the first): a two-factor policy waiting
        self._pending: dict[int, tuple[frozenset[str], float]] = {}
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self._nameless = TokenBucket(NAMELESS_PER_S, NAMELESS_BURST)
        self.unrecorded = 0  # nameless refusals beyond the budget: counted, not recorded

    def health(self) -> dict[str, object]:
        """Decisions by outcome, factors waiting, PINs refused unchecked, nameless refusals
        not recorded (beyond the budget)."""
        with self._lock:
            decisions = dict(self.counts)
        return {"decisions": decisions, "pending": len(self._pending),
                "pins_refused_locked": self.ctx.pins.refused_locked,
                "refusals_unrecorded": self.unrecorded}

    # ---- the decision ----------------------------------------------------------------------

    def present(self, p: Presented, image: np.ndarray | None = None,
                score: float | None = None) -> Outcome:
        """Decide on one credential shown at this door; ``image`` is the event's snapshot (the
        door camera's frame) and ``score`` the face match's."""
        if p.door != self.door or p.kind not in KINDS:
            return Outcome(False, f"credential {shown(p.kind, 16)} for door {shown(p.door, 64)} "
                                  f"not taken at door {self.door}")
        with self._lock:
            self._expire(p.t)
            expected = self._expected(p)
            claim = kind(p.kind).claim(self.ctx, p, expected)
            out = self._decide(p, claim, image, score)
            self.counts[out.decision] = self.counts.get(out.decision, 0) + 1
        DECISIONS.labels(p.kind, out.decision).inc()
        return out

    def _decide(self, p: Presented, claim: Claim, image: np.ndarray | None,
                score: float | None) -> Outcome:
        if claim.refused is not None:
            return self._refuse(p, claim.refused, image, score, resident_id=None,
                                pass_id=claim.pass_id)
        if claim.visitor is not None:
            return self._visitor(p, claim.visitor, image)
        rid = claim.resident_id
        resident = None if rid is None else self.directory.residents.get(rid)
        if rid is None or resident is None:
            return self._refuse(p, "unknown resident", image, score, resident_id=None)
        watch = self.directory.watched_residents.get(rid)
        if watch is not None:  # the guard is called at the first factor, whatever the policy
            verdict = decide_resident(resident, watch, self.checks, self.wall(),
                                      self.reenroll_after_days)
            return self._act(p, verdict, resident, image, score, p.kind)
        rule, closed = self._rule_now(resident)
        if rule is None:
            return self._refuse(p, closed, image, score, resident_id=rid, credential=p.kind)
        shown_before = self._pending.pop(rid, (frozenset(), p.t))
        factors = shown_before[0] | {p.kind}
        if not rule.satisfied(factors):
            if rule.partial(factors):
                self._pending[rid] = (factors, shown_before[1])
                return Outcome(False, f"{'+'.join(sorted(factors))} accepted: next factor "
                                      f"({rule})", pending=True, resident_id=rid)
            if rule.partial(frozenset({p.kind})):  # a new start: forget what came before
                self._pending[rid] = (frozenset({p.kind}), p.t)
                return Outcome(False, f"{p.kind} accepted: next factor ({rule})", pending=True,
                               resident_id=rid)
            return self._refuse(p, f"{p.kind} not accepted here (door needs {rule})", image,
                                score, resident_id=rid, credential=p.kind)
        credential = "+".join(f for f in KINDS if f in factors)
        verdict = decide_resident(resident, None, self.checks, self.wall(),
                                  self.reenroll_after_days)
        if verdict.decision == "granted" and not self.controls.anti_passback_ok(self.door, rid):
            verdict = ANTI_PASSBACK
        return self._act(p, verdict, resident, image, score, credential)

    def _expected(self, p: Presented) -> int | None:
        """The resident whose first factor waits at this door for the kind ``p`` is (a PIN
        after a card): the newest such pending entry."""
        waiting = [(t, rid) for rid, (factors, t) in self._pending.items() if p.kind not in factors]
        return max(waiting)[1] if waiting else None

    def _expire(self, now: float) -> None:
        within = self.policy.within_s
        for rid in [r for r, (_, t) in self._pending.items() if now - t > within]:
            del self._pending[rid]

    def _rule_now(self, resident: Resident | None) -> tuple[Rule | None, str]:
        """The policy in force now for ``resident`` (None: for a visitor), or None and why the
        door does not open to credentials now."""
        d, now, offset = self.policy, self.wall(), self.access.utc_offset_minutes
        text = d.policy
        if d.schedule is not None and not is_open(self.access.schedule(d.schedule), now, offset):
            if d.off_policy is None:
                return None, f"outside schedule {d.schedule}"
            text = d.off_policy
        rule = parse_rule(text)
        if resident is None:
            return rule, ""
        groups = [g for g in self.access.groups if (not g.doors or self.door in g.doors) and (
            resident.id in g.residents or any(fnmatch.fnmatchcase(resident.unit, u)
                                              for u in g.units))]
        if groups and not any(is_open(self.access.schedule(g.schedule), now, offset)
                              for g in groups):
            return None, f"outside schedule of group {groups[0].name}"
        refused = self.store.refuses_face(resident.id)
        return for_resident(rule, refused, self._face_refused_rule), ""

    def _visitor(self, p: Presented, vp: VisitorPass, image: np.ndarray | None) -> Outcome:
        rule, closed = self._rule_now(None)
        if rule is None:
            return self._refuse(p, closed, image, None, resident_id=None, pass_id=vp.pass_id)
        if VISITOR_ONLY not in rule.alternatives:
            return self._refuse(p, f"visitor passes not accepted here (door needs {rule})", image,
                                None, resident_id=None, pass_id=vp.pass_id)
        refused = self.store.use_pass(vp.pass_id, vp.uses, self.lock_wait_s)
        if refused is not None:
            return self._refuse(p, f"pass {refused}", image, None, resident_id=None,
                                pass_id=vp.pass_id)
        used = self.store.pass_uses(vp.pass_id)
        reason = f"visitor pass {vp.pass_id} (use {used} of {vp.uses})"
        ev = self.recorder.record(p.source, "access", "granted", reason, image, credential="qr")
        log.info("%s: granted %s at door %s event %s", p.source, reason, self.door, ev.id)
        self.controls.grant(self.door)
        return Outcome(True, reason, event=ev)

    # ---- effects: the event first, then the door -------------------------------------------

    def _refuse(self, p: Presented, reason: str, image: np.ndarray | None, score: float | None,
                *, resident_id: int | None, credential: str | None = None,
                pass_id: str | None = None) -> Outcome:
        if pass_id is not None:
            reason = f"{reason} ({pass_id})"
        if resident_id is None and not self._nameless.take():
            self.unrecorded += 1
            return Outcome(False, reason)
        ev = self.recorder.record(p.source, "access", "denied", reason, image,
                                  resident_id=resident_id, score=score,
                                  credential=credential or p.kind)
        who = f"resident #{resident_id}" if resident_id is not None else "-"
        log.info("%s: denied %s %s at door %s (%s) event %s", p.source, p.kind, who, self.door,
                 reason, ev.id)
        return Outcome(False, reason, event=ev, resident_id=resident_id)

    def _act(self, p: Presented, verdict: Verdict, resident: Resident, image: np.ndarray | None,
             score: float | None, credential: str) -> Outcome:
        rid = resident.id
        watch = self.directory.watched_residents.get(rid)
        ev = self.recorder.record(p.source, verdict.kind, verdict.decision, verdict.reason, image,
                                  resident_id=rid, watchlist_id=watch.id if watch else None,
                                  score=score, credential=credential)
        granted = verdict.decision == "granted"
        if granted:
            self.directory.note_seen(rid, ev.ts)
            self.controls.grant(self.door, rid)
        # ids, never names: the journal is kept and shipped, and cannot be erased per person
        log.log(logging.WARNING if verdict.decision == "alert" else logging.INFO,
                "%s: %s resident #%d by %s at door %s (%s) event %s", p.source, verdict.decision,
                rid, credential, self.door, verdict.reason, ev.id)
        return Outcome(granted, verdict.reason, alert=verdict.decision == "alert", event=ev,
                       resident_id=rid)
