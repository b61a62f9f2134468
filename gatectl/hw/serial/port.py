"""The port thread: one per relay board on a serial port, whatever its dialect (`dialect`).

One thread per board owns the port; ``pulse``/``set``/``all_off`` only put a command on a
bounded queue, so a slow or absent board never blocks a gate worker and no two threads ever
interleave frames. The thread also

- enforces software pulse deadlines (a dialect without ``hw_pulse``, or a board configured
  without it): it wakes up for the earliest deadline even when idle, and keeps re-sending OFF
  until one is confirmed;
- validates every reply (``Dialect.parse``) with a per-request timeout and bounded retries; a
  garbled, short, bad-CRC or foreign frame is counted and never acted on;
- reads the relays back after every write (and when a board-timed pulse should have ended), so
  ``is_on`` reports what the board says, not what we asked for (a blind dialect: what was sent);
- polls the inputs every ``poll_ms`` (a board without inputs is still asked something);
- treats an unopenable port, an I/O error or a board that stops answering as an outage: state
  "offline", reopen with exponential backoff (capped at ``reconnect_max_s``), one WARNING per
  outage and one INFO when back; every (re)connect first switches all relays off, because a
  latch-only board may have been left on by whatever interrupted us.

Latency hook for benchmarks: ``SerialBoard(cfg, on_write=hook)`` calls ``hook(frame, t)`` from
the port thread right after each frame was handed to the OS, with ``t = clock()`` (keep it
quick: the port waits for it); ``SerialLink.last_write_at`` keeps the last such time.
``clock`` times deadlines and timestamps; waits for a reply use the real monotonic clock
(wire time is physical).
"""

from __future__ import annotations

import logging
import math
import queue
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial

from gatectl.config.hardware import BoardBase, SerialBoardConfig
from gatectl.hw.relay import BoardError, Relay, SimulatedRelay
from gatectl.hw.serial.dialect import (
    Dialect,
    FrameError,
    Refused,
    dialect_for,
    frame_gap_s,
    hexs,
    wire_time_s,
)

log = logging.getLogger("gatectl.relay")

READ_TICK_S = 0.005  # port read timeout: how late we notice a reply deadline or a silent line
IDLE_TICK_S = 0.05  # longest the port thread sleeps without re-checking its deadlines
QUEUE_SIZE = 64  # relay commands are a few per minute; a full queue means the thread is stuck
BACKOFF_START_S = 0.1
CONFIRM_MARGIN_S = 0.1  # read the coils back this long after a board-timed pulse should end
WRITE_TIMEOUT_S = 1.0  # a write that blocks this long (flow control, dead adapter) = port lost
CLOSE_JOIN_S = 30.0

_IO_ERRORS = (OSError, termios.error)  # serial.SerialException is an OSError

COUNTERS = ("frames_sent", "frames_ok", "timeouts", "bad_frames", "exceptions", "retries",
            "reconnects", "commands_ok", "commands_failed", "commands_rejected", "reads_failed")

WriteHook = Callable[[bytes, float], None]


class PortLost(BoardError):
    """The port itself failed (unplugged adapter, closed under us): reopen it."""


class NoReply(BoardError):
    """Every attempt of a request timed out with not a byte back: the board is not there."""


class RequestFailed(BoardError):
    """The board answered, but no attempt produced a valid reply (or it refused for good)."""

    def __init__(self, message: str, unsupported: bool = False):
        super().__init__(message)
        self.unsupported = unsupported  # refused because the board lacks the command


class Counters:
    """Health counters; written by the port thread and by rejecting callers, read by status()."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._n = dict.fromkeys(COUNTERS, 0)

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._n[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._n)


class SerialLink:
    """An open port and the request/reply discipline of a dialect on it. Only the port thread
    (or a benchmark owning the port) may use it."""

    def __init__(self, port: serial.Serial, dialect: Dialect, counters: Counters,
                 clock: Callable[[], float] = time.monotonic, on_write: WriteHook | None = None):
        self.port = port
        self.dialect = dialect
        self.cfg = dialect.cfg
        self.counters = counters
        self.clock = clock
        self.on_write = on_write
        self.last_write_at: float | None = None
        self._gap_s = frame_gap_s(self.cfg.baud)
        self._quiet_since = 0.0  # time.monotonic() when the line last fell silent

    def send(self, frame: bytes) -> None:
        """Write one frame after the inter-frame silence, and timestamp it."""
        wait = self._quiet_since + self._gap_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            self.port.write(frame)
        except _IO_ERRORS as exc:
            raise PortLost(f"write failed: {exc}") from None
        t = self.clock()
        self.last_write_at = t
        self.counters.add("frames_sent")
        if self.on_write is not None:
            self.on_write(frame, t)
        self._quiet_since = time.monotonic() + wire_time_s(len(frame), self.cfg.baud)

    def request(self, frame: bytes) -> list[bool] | None:
        """``transact`` on a board that answers; a blind board only gets the frame."""
        if self.dialect.answers:
            return self.transact(frame)
        self.send(frame)
        return None

    def transact(self, request: bytes) -> list[bool] | None:
        """Send ``request`` until a valid reply arrives (at most 1 + retries times); return its
        payload (bits for a read, None for a confirmed write). Raises NoReply when nothing ever
        came back, RequestFailed when only invalid replies or refusals did, PortLost."""
        dialect = self.dialect
        want = dialect.reply_length(request)
        budget = self.cfg.timeout_ms / 1000 + wire_time_s(len(request) + want, self.cfg.baud)
        attempts = self.cfg.retries + 1
        replied = False
        failure = ""
        for attempt in range(attempts):
            if attempt:
                self.counters.add("retries")
            self._flush()
            self.send(request)
            deadline = time.monotonic() + budget

            def read(n: int, end: float = deadline) -> bytes:
                return self._read(n, end)

            reply = dialect.read_reply(request, read)
            if not reply:
                self.counters.add("timeouts")
                failure = f"no reply within {budget * 1000:.0f} ms"
                continue
            replied = True
            try:
                result = dialect.parse(request, reply)
            except FrameError as exc:
                self.counters.add("bad_frames")
                failure = str(exc)
                log.debug("relay %s: rejected frame: %s", self.cfg.port, exc)
                self._drain()
                continue
            except Refused as exc:
                self.counters.add("exceptions")
                failure = str(exc)
                if exc.final:
                    raise RequestFailed(f"{hexs(request)}: {exc}", exc.unsupported) from None
                continue
            self.counters.add("frames_ok")
            return result
        what = dialect.describe(request)
        if not replied:
            raise NoReply(f"no reply to {what} in {attempts} attempt(s) of {budget * 1000:.0f} ms")
        raise RequestFailed(f"{what} failed {attempts} time(s), last: {failure}")


    def read_bits(self, request: bytes) -> list[bool]:
        """``transact`` for a read: a reply that carries no bits is an invalid one."""
        bits = self.transact(request)
        if bits is None:
            raise RequestFailed(f"{self.dialect.describe(request)}: reply without bits")
        return bits

    def _read(self, n: int, deadline: float) -> bytes:
        buf = bytearray()
        while len(buf) < n and time.monotonic() < deadline:
            try:
                buf += self.port.read(n - len(buf))
            except _IO_ERRORS as exc:
                raise PortLost(f"read failed: {exc}") from None
        if buf:
            self._quiet_since = time.monotonic()
        return bytes(buf)

    def probe(self) -> None:
        """Liveness check for a board that never speaks (blind): an unplugged adapter raises
        PortLost here rather than at the next door opening. Bytes it sends unasked are junk."""
        try:
            junk = self.port.read(1)
        except _IO_ERRORS as exc:
            raise PortLost(f"read failed: {exc}") from None
        if junk:
            self.counters.add("bad_frames")
            self._drain()

    def _flush(self) -> None:
        """Drop stale input so a late reply to an earlier request is not taken for this one's."""
        try:
            self.port.reset_input_buffer()
        except _IO_ERRORS as exc:
            raise PortLost(f"flush failed: {exc}") from None

    def _drain(self) -> None:
        """After a bad frame, wait for the line to fall silent: the tail of a garbled reply
        must not be read as the start of the next one."""
        end = time.monotonic() + self.cfg.timeout_ms / 1000
        while time.monotonic() < end and self._read(256, end):
            pass

    def close(self) -> None:
        """Give the last frames (the all-off of a write-only board) their wire time, then close.
        Not tcdrain: with a stuck adapter it can block forever."""
        time.sleep(min(max(self._quiet_since - time.monotonic(), 0.0), WRITE_TIMEOUT_S))
        try:
            self.port.close()
        except _IO_ERRORS as exc:
            log.debug("relay %s: close: %s", self.cfg.port, exc)


@dataclass(frozen=True)
class _Command:
    kind: str  # "pulse" | "set" | "all_off"
    channel: int = 0
    seconds: float = 0.0
    on: bool = False

    def __str__(self) -> str:
        if self.kind == "pulse":
            return f"pulse channel {self.channel} for {self.seconds:g} s"
        if self.kind == "set":
            return f"set channel {self.channel} {'on' if self.on else 'off'}"
        return "all off"


_CLOSE = _Command("close")  # wakes the port thread up to shut down


class SerialBoard:
    """A relay board of any registered dialect; see the module docstring. Implements ``Relay``."""

    def __init__(self, cfg: SerialBoardConfig, clock: Callable[[], float] = time.monotonic,
                 on_write: WriteHook | None = None):
        self.dialect = dialect_for(cfg)
        self.cfg = cfg
        self.clock = clock
        self._on_write = on_write
        self.hw_pulse = self.dialect.hw_pulse
        self._label = f"relay board {cfg.name} ({cfg.port})"
        self._counters = Counters()
        self._lock = threading.Lock()  # guards the snapshot fields below, read by callers
        self._state = "offline"
        self._last_error: str | None = "connecting"
        self._on = [False] * cfg.channels
        self._inputs: list[bool] | None = None
        self._queue: queue.Queue[_Command] = queue.Queue(QUEUE_SIZE)
        self._closing = threading.Event()
        # owned by the port thread
        self._link: SerialLink | None = None
        self._outage = False  # a WARNING was logged for the current outage
        self._relock: dict[int, float] = {}  # software pulses: channel -> clock() to send OFF
        self._hw_until: dict[int, float] = {}  # board-timed pulses: channel -> clock() it ends
        self._latched: set[int] = set()
        self._confirm_at = math.inf  # next read-back for the end of a board-timed pulse
        self._next_poll = 0.0
        self._all_command = True  # the board takes the dialect's all-off; False once "unsupported"
        self._thread = threading.Thread(target=self._run, name=f"relay-{cfg.name}", daemon=True)
        self._thread.start()

    # ---- caller side -------------------------------------------------------------------

    def _check(self, channel: int) -> None:
        if not 0 <= channel < self.cfg.channels:
            raise ValueError(f"relay channel {channel} out of range 0..{self.cfg.channels - 1}")

    def pulse(self, channel: int, seconds: float) -> None:
        self._check(channel)
        if not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"pulse length must be a positive number of seconds, got {seconds!r}")
        self._submit(_Command("pulse", channel, seconds=seconds))

    def set(self, channel: int, on: bool) -> None:
        self._check(channel)
        self._submit(_Command("set", channel, on=on))

    def all_off(self) -> None:
        """While offline there is nothing to send: every reconnect switches all off first."""
        if self._state == "online" and not self._closing.is_set():
            self._submit(_Command("all_off"))

    def _submit(self, cmd: _Command) -> None:
        """Queue a command, or raise BoardError now: a caller (door logic) must learn at once
        that a door will not open, and a command must never wait out an outage to fire late."""
        with self._lock:
            state, err = ("stopped" if self._closing.is_set() else self._state), self._last_error
        if state != "online":
            self._counters.add("commands_rejected")
            raise BoardError(f"{self._label}: {state}{f' ({err})' if err else ''}; {cmd} not sent")
        try:
            self._queue.put_nowait(cmd)
        except queue.Full:
            self._counters.add("commands_rejected")
            log.error("%s: command queue full (%d), %s rejected", self._label, QUEUE_SIZE, cmd)
            raise BoardError(f"{self._label}: command queue full; {cmd} not sent") from None

    def is_on(self, channel: int) -> bool:
        self._check(channel)
        with self._lock:
            return self._on[channel]

    def inputs(self) -> list[bool] | None:
        with self._lock:
            return None if self._inputs is None else list(self._inputs)

    def health(self) -> dict:
        with self._lock:
            st = {"driver": self.cfg.driver, "name": self.cfg.name, "port": self.cfg.port,
                  "state": self._state, "hw_pulse": self.hw_pulse, "last_error": self._last_error,
                  "on": list(self._on)}
        st.update(self._counters.snapshot())
        return st

    def close(self) -> None:
        """All off, stop the thread, close the port. Idempotent."""
        if not self._closing.is_set():
            self._closing.set()
            try:
                self._queue.put_nowait(_CLOSE)
            except queue.Full:
                pass  # the thread re-checks _closing at least every IDLE_TICK_S
        self._thread.join(CLOSE_JOIN_S)
        if self._thread.is_alive():
            log.error("%s: port thread did not stop within %.0f s", self._label, CLOSE_JOIN_S)

    # ---- port thread -------------------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_START_S
        while not self._closing.is_set():
            try:
                self._connect()
                backoff = BACKOFF_START_S
                self._go_online()
                self._serve()
            except (BoardError, ValueError, *_IO_ERRORS) as exc:  # ValueError: a bad port URL
                self._go_offline(exc)
            except Exception as exc:  # a driver bug must not leave a relay closed and no thread
                log.exception("%s: port thread failed; reconnecting", self._label)
                self._go_offline(exc)
            if not self._closing.is_set():
                self._wait_offline(backoff)
                backoff = min(backoff * 2, self.cfg.reconnect_max_s)
        self._shutdown()

    @property
    def link(self) -> SerialLink:
        """The open port; a request without one is a lost port (the loop reconnects)."""
        if self._link is None:
            raise PortLost("port not open")
        return self._link

    def _connect(self) -> None:
        """Open the port and bring the board to its safe state; offline unless it answers."""
        port = serial.serial_for_url(self.cfg.port, baudrate=self.cfg.baud, timeout=READ_TICK_S,
                                     write_timeout=WRITE_TIMEOUT_S, exclusive=True)
        self._link = SerialLink(port, self.dialect, self._counters, self.clock, self._on_write)
        self._all_off()
        self._readback()
        self._next_poll = self.clock()
        self._poll_due()

    def _go_online(self) -> None:
        with self._lock:
            self._state = "online"
            self._last_error = None
        if self._outage:
            self._counters.add("reconnects")
            log.info("%s: back online", self._label)
            self._outage = False

    def _go_offline(self, exc: BaseException) -> None:
        """Forget everything the board state depended on: the next connect starts from all off."""
        if self._link is not None:
            self._link.close()
            self._link = None
        self._relock.clear()
        self._hw_until.clear()
        self._latched.clear()
        self._confirm_at = math.inf
        reason = str(exc) or type(exc).__name__
        with self._lock:
            self._state = "offline"
            self._last_error = reason
            self._inputs = None
        if not self._outage:
            self._outage = True
            log.warning("%s: offline: %s; retrying every %.3g s at most", self._label, reason,
                        self.cfg.reconnect_max_s)
        self._fail_queued(reason)

    def _wait_offline(self, delay: float) -> None:
        """Sleep before the next reopen, failing (not keeping) commands queued meanwhile."""
        deadline = time.monotonic() + delay
        while not self._closing.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                cmd = self._queue.get(timeout=left)
            except queue.Empty:
                return
            if cmd is not _CLOSE:
                self._fail(cmd, "board offline")

    def _fail_queued(self, reason: str) -> None:
        while True:
            try:
                cmd = self._queue.get_nowait()
            except queue.Empty:
                return
            if cmd is not _CLOSE:
                self._fail(cmd, reason)

    def _fail(self, cmd: _Command, reason: str) -> None:
        self._counters.add("commands_failed")
        with self._lock:
            self._last_error = reason
        log.warning("%s: %s failed: %s", self._label, cmd, reason)

    def _serve(self) -> None:
        """Commands first (a grant is waiting), then due relocks, read-backs and polls."""
        while not self._closing.is_set():
            self._relock_due()
            try:
                cmd = self._queue.get(timeout=self._idle_wait())
            except queue.Empty:
                cmd = None
            if cmd is _CLOSE:
                return
            if cmd is not None:
                self._execute(cmd)
                continue
            self._confirm_due()
            self._poll_due()

    def _idle_wait(self) -> float:
        due = [self._confirm_at, self._next_poll, *self._relock.values()]
        return min(max(min(due) - self.clock(), 0.0), IDLE_TICK_S)

    def _execute(self, cmd: _Command) -> None:
        try:
            if cmd.kind == "pulse":
                self._pulse(cmd.channel, cmd.seconds)
            elif cmd.kind == "set":
                self._latch(cmd.channel, cmd.on)
            else:
                self._all_off()
        except (PortLost, NoReply) as exc:
            self._fail(cmd, str(exc))
            raise
        except RequestFailed as exc:
            self._fail(cmd, str(exc))  # it may still have switched: the read-back tells
        else:
            self._counters.add("commands_ok")
        self._readback()

    def _switch(self, channel: int, on: bool) -> None:
        self.link.request(self.dialect.switch(channel, on))
        with self._lock:
            self._on[channel] = on

    def _pulse(self, channel: int, seconds: float) -> None:
        if channel in self._latched:
            log.debug("%s: channel %d is latched on; pulse ignored", self._label, channel)
            return
        now = self.clock()
        if self.hw_pulse:
            # a renewal (elevator hold) must never shorten a pulse the board is already timing
            seconds = max(seconds, self._hw_until.get(channel, now) - now)
            frame, timed = self.dialect.flash(channel, seconds)
            until = now + timed
            self._hw_until[channel] = until
            self._confirm_at = min(self._confirm_at, until + CONFIRM_MARGIN_S)
            self.link.request(frame)
            with self._lock:
                self._on[channel] = True
        else:
            # the deadline goes in before the write: whatever the write's fate, OFF follows
            self._relock[channel] = max(self._relock.get(channel, now), now + seconds)
            self._switch(channel, True)

    def _latch(self, channel: int, on: bool) -> None:
        self._relock.pop(channel, None)
        self._hw_until.pop(channel, None)
        if on:
            self._latched.add(channel)
        else:
            self._latched.discard(channel)
        self._switch(channel, on)

    def _all_off(self) -> None:
        self._relock.clear()
        self._hw_until.clear()
        self._latched.clear()
        frame = self.dialect.all_off() if self._all_command else None
        if frame is not None:
            try:
                self.link.request(frame)
            except RequestFailed as exc:
                if not exc.unsupported:
                    raise
                log.info("%s: no all-relays command (%s); switching off one by one",
                         self._label, exc)
                self._all_command = False
            else:
                with self._lock:
                    self._on = [False] * self.cfg.channels
                return
        failed: list[RequestFailed] = []
        for channel in range(self.cfg.channels):  # one refusal must not keep the rest closed
            try:
                self._switch(channel, False)
            except RequestFailed as exc:
                failed.append(exc)
        if failed:
            raise RequestFailed(f"{len(failed)} relay(s) not confirmed off; first: {failed[0]}")

    def _relock_due(self) -> None:
        """Software pulse ends: OFF now, and again on later passes until the board reports the
        relay off (the read-back; a blind board cannot report, a sent frame has to do)."""
        now = self.clock()
        for channel in [c for c, t in self._relock.items() if t <= now]:
            try:
                self._switch(channel, False)
            except RequestFailed as exc:
                self._fail(_Command("set", channel), f"relock: {exc}")
            self._readback()
            with self._lock:
                still_on = self._on[channel]
            if still_on:
                self._relock[channel] = now + self.cfg.timeout_ms / 1000
            else:
                del self._relock[channel]

    def _confirm_due(self) -> None:
        now = self.clock()
        if now < self._confirm_at:
            return
        for channel in [c for c, t in self._hw_until.items() if t + CONFIRM_MARGIN_S <= now]:
            del self._hw_until[channel]
        pending = (t + CONFIRM_MARGIN_S for t in self._hw_until.values())
        self._confirm_at = min(pending, default=math.inf)
        self._readback()

    def _readback(self) -> None:
        """Relay states as the board reports them (a blind board cannot be asked)."""
        if not self.dialect.answers:
            return
        try:
            bits = self.link.read_bits(self.dialect.read_relays())
        except RequestFailed as exc:
            self._counters.add("reads_failed")
            log.debug("%s: coil read-back failed: %s", self._label, exc)
            return
        with self._lock:
            self._on = bits

    def _poll_due(self) -> None:
        """Every poll_ms: the inputs; a board without inputs is still asked something (its
        relays; a blind board a read of the silent line): an outage shows before the next grant."""
        now = self.clock()
        if now < self._next_poll:
            return
        self._next_poll = now + self.cfg.poll_ms / 1000
        if not self.dialect.inputs:
            if self.dialect.answers:
                self._readback()
            else:
                self.link.probe()
            with self._lock:
                self._inputs = []
            return
        try:
            bits = self.link.read_bits(self.dialect.read_inputs())
        except RequestFailed as exc:
            self._counters.add("reads_failed")  # keep the previous snapshot: one period stale
            log.debug("%s: input poll failed: %s", self._label, exc)
            return
        with self._lock:
            self._inputs = bits

    def _shutdown(self) -> None:
        self._fail_queued("board closing")
        if self._link is not None:
            try:
                self._all_off()
                self._readback()
            except (BoardError, *_IO_ERRORS) as exc:
                log.warning("%s: could not switch all relays off at close: %s", self._label, exc)
            self._link.close()
            self._link = None
        with self._lock:
            self._state = "stopped"
            self._inputs = None


def make_board(cfg: BoardBase) -> Relay:
    """The driver a board's config asks for; the simulated one never touches a port."""
    if isinstance(cfg, SerialBoardConfig):
        return SerialBoard(cfg)
    return SimulatedRelay(cfg.channels, cfg.inputs)
