"""The OSDP control panel (CP) of one RS-485 bus: the only thread that touches the port.

libosdp does the protocol (polling, the Secure Channel, retries); this thread calls its
``refresh()`` every 20 ms, turns what the readers report into ``Presented`` credentials and
``system`` events, and sends the readers' LED and buzzer commands. Nothing here decides who
gets in: each credential goes to the door's sink (the access decision) on a worker thread of
its own, so a slow decision (the store's write lock) never stalls the bus polling, and the
``Outcome`` comes back as the reader's feedback: granted = green and a short beep, refused = red
and a long beep, pending (a first factor waiting for the second) = amber.

What a reader sends is hostile: a card read is bounded by libosdp's packet size, a PIN by
``pin_max_digits`` and ``pin_timeout_s``, a key outside 0-9 * # discards the entry, and at most
``QUEUE`` credentials wait for decisions (more are dropped, counted). A reader that does not
complete the Secure Channel with its configured key never comes online, so nothing it sends
reaches a sink; a reader reporting tamper has its reads refused (red, long beep, counted) until
it reports the tamper cleared.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import osdp
import osdp_sys

from gatectl.config.readers import ReaderConfig
from gatectl.core.safe_text import shown
from gatectl.domain.credentials import Outcome, Presented
from gatectl.hw.osdp.channel import SerialChannel

log = logging.getLogger("gatectl.readers")

Sink = Callable[[Presented], Outcome]
Report = Callable[[str, str], None]  # (reader name, reason): a `system` event

REFRESH_S = 0.02  # libosdp's own pace; a poll every 20 ms keeps card-to-sink latency low
STATUS_EVERY_S = 0.1  # how often online / Secure Channel bits are compared
QUEUE = 16  # credentials waiting for a decision; a reader cannot produce more honestly
REOPEN_S = (1.0, 30.0)  # port reopen backoff, first and longest wait
QUIET_S = 10.0  # at most one log line per reader and reason this often
ASCII_MAX = 64  # characters of an ASCII-format card read
ABSENT_S = 10.0  # a reader that has not come online this long after the bus opened is reported

ENTER = {0x0D, ord("#")}  # OSDP keypads send 0x0D for '#'; some send the character
CLEAR = {0x7F, ord("*")}

# feedback: (LED colour, buzzer tenths of a second or 0)
GRANTED = (osdp.CommandLEDColor.Green, 1)
REFUSED = (osdp.CommandLEDColor.Red, 10)
PENDING = (osdp.CommandLEDColor.Amber, 0)
LED_TENTHS = 30  # how long the feedback colour shows, then the reader's own idle state


def card_value(data: bytes, bits: int) -> str:
    """A raw card read as hex of its ``bits`` bits (MSB first, zero-padded to whole hex digits):
    the same number whatever the padding bits after them say."""
    nbytes = (bits + 7) // 8
    n = int.from_bytes(data[:nbytes].ljust(nbytes, b"\0"), "big") >> (nbytes * 8 - bits)
    return f"{n:0{(bits + 3) // 4}x}"


def feedback(outcome: Outcome) -> list[dict[str, Any]]:
    """The LED (and buzzer) commands that show ``outcome`` on a reader."""
    colour, beep = PENDING if outcome.pending else GRANTED if outcome.granted else REFUSED
    cmds: list[dict[str, Any]] = [{
        "command": osdp.Command.LED, "reader": 0, "led_number": 0, "temporary": True,
        "control_code": 2, "on_color": colour, "off_color": osdp.CommandLEDColor.Black,
        "on_count": LED_TENTHS, "off_count": 0, "timer_count": LED_TENTHS,
    }]
    if beep:
        cmds.append({"command": osdp.Command.Buzzer, "reader": 0, "control_code": 2,
                     "on_count": beep, "off_count": 0, "rep_count": 1})
    return cmds


@dataclass
class ReaderState:
    """What the panel knows of one reader; read by ``health()`` from another thread (plain
    values, replaced whole)."""

    cfg: ReaderConfig
    sink: Sink | None = None  # resolved at start: the access decision may need the store
    online: bool = False
    secure: bool = False
    tampered: bool = False
    power_fault: bool = False
    reads: int = 0
    refused_tampered: int = 0
    bad_input: int = 0
    dropped: int = 0
    pin: list[str] = field(default_factory=list)
    pin_t: float = 0.0
    keyset_sent: bool = False
    absent_reported: bool = False


class ReaderPanel:
    """The readers of one port (one bus, one baud). ``sink_for(door)`` gives each reader's
    door its access decision; ``report(reader, reason)`` records a ``system`` event."""

    def __init__(self, port: str, baud: int, readers: list[ReaderConfig],
                 sink_for: Callable[[str], Sink], report: Report, *,
                 clock: Callable[[], float] = time.monotonic):
        self.port = port
        self.baud = baud
        self.report = report
        self.clock = clock
        self.sink_for = sink_for
        self.readers = [ReaderState(r) for r in readers]
        self.port_error: str | None = None
        self._stop = threading.Event()
        self._events: deque[tuple[int, dict]] = deque()
        self._decide: queue.Queue[tuple[int, Presented] | None] = queue.Queue(QUEUE)
        self._feedback: deque[tuple[int, Outcome]] = deque()
        self._quiet: dict[tuple[str, str], tuple[float, int]] = {}
        self._opened = 0.0  # clock() when the port was last opened
        self._thread = threading.Thread(target=self._run, name=f"osdp-{port}", daemon=True)
        self._worker = threading.Thread(target=self._decisions, name=f"osdp-decide-{port}",
                                        daemon=True)

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        for s in self.readers:
            s.sink = self.sink_for(s.cfg.door)
        self._worker.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._decide.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(5)
        self._worker.join(5)

    def alive(self) -> bool:
        return self._thread.is_alive() and self._worker.is_alive()

    def health(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "port_error": self.port_error,
            "readers": {
                s.cfg.name: {
                    "online": s.online, "secure": s.secure, "tampered": s.tampered,
                    "reads": s.reads, "refused_tampered": s.refused_tampered,
                    "bad_input": s.bad_input, "dropped": s.dropped,
                }
                for s in self.readers
            },
        }

    # ---- the bus thread --------------------------------------------------------------

    def _open(self) -> tuple[SerialChannel, Any]:
        channel = SerialChannel(self.port, self.baud)
        infos = []
        for s in self.readers:
            flags = [osdp.LibFlag.EnableNotification]
            # install mode: a reader still on the default key (SCBK-D) is let open the channel
            # with it, then KEYSET gives it ours; libosdp cannot enforce the channel meanwhile
            if s.cfg.secure and not s.cfg.install_mode:
                flags.append(osdp.LibFlag.EnforceSecure)
            infos.append(osdp.PDInfo(s.cfg.address, channel, scbk=s.cfg.key(),
                                     name=s.cfg.name, flags=flags).get())
        ctx = osdp_sys.ControlPanel(infos)
        ctx.set_event_callback(self._on_event)
        return channel, ctx

    def _run(self) -> None:
        # the C library's own lines are unescaped and unbounded; the panel reports instead
        osdp_sys.set_loglevel(osdp_sys.LOG_EMERG)
        wait = REOPEN_S[0]
        while not self._stop.is_set():
            try:
                channel, ctx = self._open()
            except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
                self._bus_down(f"cannot open {self.port}: {shown(exc, 160)}")
                self._stop.wait(wait)
                wait = min(wait * 2, REOPEN_S[1])
                continue
            wait = REOPEN_S[0]
            if self.port_error is not None:
                self.report(self.port, "reader_bus_online")
                self.port_error = None
            try:
                self._serve(channel, ctx)
            except Exception as exc:  # noqa: BLE001 - a bug or a library error: reopen the bus
                channel.error = f"panel error: {shown(exc, 160)}"
                log.error("reader bus %s: %s; reopening", self.port, channel.error)
            finally:
                channel.close()
            if channel.error is not None:
                self._bus_down(f"{self.port}: {channel.error}")
                self._stop.wait(wait)
        for s in self.readers:
            self._set_online(s, False, quiet=True)

    def _bus_down(self, why: str) -> None:
        for s in self.readers:
            self._set_online(s, False)
        if self.port_error is None:
            self.report(self.port, f"reader_bus_offline: {why}")
            log.warning("reader bus %s", why)
        self.port_error = why

    def _serve(self, channel: SerialChannel, ctx: Any) -> None:
        next_status = 0.0
        self._opened = self.clock()
        while not self._stop.is_set() and channel.error is None:
            ctx.refresh()
            while self._events:
                idx, ev = self._events.popleft()
                self._event(ctx, idx, ev, channel)
            while self._feedback:
                idx, outcome = self._feedback.popleft()
                self._show(ctx, idx, outcome)
            now = self.clock()
            if now >= next_status:
                next_status = now + STATUS_EVERY_S
                self._status(ctx)
            self._stop.wait(REFRESH_S)

    def _on_event(self, pd: int, event: dict) -> int:
        """libosdp's callback, run inside ``refresh()`` on this thread: queue, act after."""
        self._events.append((pd, event))
        return 0

    def _status(self, ctx: Any) -> None:
        online, secure = ctx.status(), ctx.sc_status()
        for i, s in enumerate(self.readers):
            s.secure = bool(secure >> i & 1)
            up = bool(online >> i & 1)
            if up != s.online:
                self._set_online(s, up)
            if up:
                s.absent_reported = False
            elif not s.absent_reported and self.clock() - self._opened > ABSENT_S:
                s.absent_reported = True
                self.report(s.cfg.name, f"reader_not_answering: nothing online at address "
                                        f"{s.cfg.address} on {self.port} after {ABSENT_S:g} s")
            if up and s.cfg.install_mode and s.secure and not s.keyset_sent:
                ctx.submit_command(i, {"command": osdp.Command.Keyset, "type": 1,
                                       "data": s.cfg.key()})
                s.keyset_sent = True
                self.report(s.cfg.name, "reader_keyset: the configured SCBK was sent; set "
                                        "install_mode = false")

    def _set_online(self, s: ReaderState, up: bool, quiet: bool = False) -> None:
        if up == s.online:
            return
        s.online = up
        if not up:
            s.secure = False
            s.pin = []
        if not quiet:
            how = "secure channel" if s.secure else "no secure channel"
            self.report(s.cfg.name, f"reader_online ({how})" if up else "reader_offline")
            log.info("reader %s %s", s.cfg.name, "online" if up else "offline")

    def _event(self, ctx: Any, idx: int, ev: dict, channel: SerialChannel) -> None:
        if not 0 <= idx < len(self.readers) or not isinstance(ev, dict):
            return
        s = self.readers[idx]
        kind = ev.get("event")
        if kind == osdp.Event.Notification:
            self._notification(s, ev, channel)
        elif kind == osdp.Event.Status:
            self._local_status(s, ev)
        elif kind == osdp.Event.CardRead:
            self._card(ctx, idx, s, ev)
        elif kind == osdp.Event.KeyPress:
            self._keys(ctx, idx, s, ev)

    def _notification(self, s: ReaderState, ev: dict, channel: SerialChannel) -> None:
        # a Secure Channel that ended inactive while the reader answers at all: wrong key
        if (ev.get("type") == osdp.EventNotification.SecureChannelStatus
                and ev.get("arg0") == 0 and not s.online and s.cfg.secure
                and channel.rx_bytes > 0):
            self.report(s.cfg.name, "reader_refused: it answers but failed the Secure Channel "
                                    "(wrong SCBK, or a reader not yet installed)")
            self._warn(s, "refused", "reader %s refused: Secure Channel failed (wrong key?)")

    def _local_status(self, s: ReaderState, ev: dict) -> None:
        report = ev.get("report")
        if ev.get("type") != osdp.StatusReportType.Local or not isinstance(report, bytes):
            return
        tamper = len(report) > 0 and report[0] != 0
        power = len(report) > 1 and report[1] != 0
        if tamper != s.tampered:
            s.tampered = tamper
            self.report(s.cfg.name, "reader_tamper" if tamper else "reader_tamper_cleared")
            if tamper:
                log.warning("reader %s reports tamper: its reads are refused", s.cfg.name)
        if power != s.power_fault:
            s.power_fault = power
            self.report(s.cfg.name, "reader_power_fault" if power else "reader_power_restored")

    def _card(self, ctx: Any, idx: int, s: ReaderState, ev: dict) -> None:
        data, fmt = ev.get("data"), ev.get("format")
        bits = ev.get("length")
        if not isinstance(data, bytes) or not data:
            return self._bad(ctx, idx, s, "empty card read")
        if fmt == osdp.CardFormat.ASCII:
            text = data[:ASCII_MAX].decode("ascii", "replace")
            if len(data) > ASCII_MAX or not text.isprintable() or "\ufffd" in text:
                return self._bad(ctx, idx, s, "card read not printable ASCII")
            value, nbits = text, None
        elif isinstance(bits, int) and 1 <= bits <= len(data) * 8:
            value, nbits = card_value(data, bits), bits
        else:
            return self._bad(ctx, idx, s, "card read with a bad bit length")
        s.pin = []  # a card is a new attempt
        self._present(ctx, idx, s, Presented(kind="card", door=s.cfg.door, source=s.cfg.name,
                                             value=value, bits=nbits, t=self.clock()))

    def _keys(self, ctx: Any, idx: int, s: ReaderState, ev: dict) -> None:
        data = ev.get("data")
        if not isinstance(data, bytes):
            return
        now = self.clock()
        if s.pin and now - s.pin_t > s.cfg.pin_timeout_s:
            s.pin = []
        for b in data:
            if ord("0") <= b <= ord("9"):
                s.pin.append(chr(b))
                s.pin_t = now
                if len(s.pin) > s.cfg.pin_max_digits:
                    s.pin = []
                    return self._bad(ctx, idx, s, "PIN longer than pin_max_digits")
            elif b in CLEAR:
                s.pin = []
            elif b in ENTER:
                if s.pin:
                    pin, s.pin = "".join(s.pin), []
                    self._present(ctx, idx, s, Presented(kind="pin", door=s.cfg.door,
                                                         source=s.cfg.name, value=pin, t=now))
            else:
                s.pin = []
                return self._bad(ctx, idx, s, "key outside 0-9 * #")

    def _present(self, ctx: Any, idx: int, s: ReaderState, p: Presented) -> None:
        s.reads += 1
        if s.cfg.secure and not s.secure:  # install mode lets a reader online in the clear
            s.bad_input += 1
            self._warn(s, "clear", "reader %s: read refused, no Secure Channel")
            self._show(ctx, idx, Outcome(False, "no secure channel"))
            return
        if s.tampered:
            s.refused_tampered += 1
            self._warn(s, "tampered", "reader %s: read refused, the reader reports tamper")
            self._show(ctx, idx, Outcome(False, "reader tampered"))
            return
        try:
            self._decide.put_nowait((idx, p))
        except queue.Full:
            s.dropped += 1
            self._warn(s, "dropped", "reader %s: decisions are behind; a read was dropped")
            self._show(ctx, idx, Outcome(False, "busy"))

    def _bad(self, ctx: Any, idx: int, s: ReaderState, why: str) -> None:
        s.bad_input += 1
        self._warn(s, "bad", f"reader %s: refused input: {why}")
        self._show(ctx, idx, Outcome(False, why))

    def _show(self, ctx: Any, idx: int, outcome: Outcome) -> None:
        for cmd in feedback(outcome):
            ctx.submit_command(idx, cmd)

    def _warn(self, s: ReaderState, key: str, fmt: str) -> None:
        """One line per reader and ``key`` per QUIET_S, saying how many were not logged."""
        now = self.clock()
        last, skipped = self._quiet.get((s.cfg.name, key), (float("-inf"), 0))
        if now - last < QUIET_S:
            self._quiet[(s.cfg.name, key)] = (last, skipped + 1)
            return
        self._quiet[(s.cfg.name, key)] = (now, 0)
        log.warning(fmt + (f" ({skipped} more not logged)" if skipped else ""), s.cfg.name)

    # ---- the decision thread ---------------------------------------------------------

    def _decisions(self) -> None:
        while True:
            item = self._decide.get()
            if item is None or self._stop.is_set():
                return
            idx, p = item
            s = self.readers[idx]
            try:
                if s.sink is None:
                    raise RuntimeError("the panel was not started")
                outcome = s.sink(p)
            except Exception as exc:  # noqa: BLE001 - a failing decision refuses; the bus goes on
                log.error("reader %s: access decision failed: %s", s.cfg.name,
                          shown(exc, 200))
                outcome = Outcome(False, "decision failed")
            self._feedback.append((idx, outcome))
