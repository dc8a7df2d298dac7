"""DTMF: batched in-band detection (Goertzel as a matrix product) and RFC 4733 event send/receive.

In-band detection (:class:`GoertzelDetector`) works on decoded G.711 PCM for many legs at once. Each 20 ms
frame is split into two 10 ms blocks of 80 samples, and a matrix product (blocks x a precomputed cos/sin
basis) gives every block's complex DFT at the eight DTMF frequencies, Hamming-windowed (levels, energy ratio,
phase) and rectangular (dominance). A cheap screen drops blocks whose strongest low and high bins cannot hold
the energy; on the few windows left, a decision is taken every 10 ms on the last two blocks (20 ms), using:

* level: each tone at least ``MIN_LEVEL_DBM0`` in both blocks;
* energy ratio: the two tones hold at least ``MIN_TONE_FRACTION`` of each block's energy (rejects speech,
  music, noise, and blocks only partly covered by the tone);
* stationarity: the two blocks' energies within ``MAX_BLOCK_STEP_DB``;
* twist: high group at most ``REVERSE_TWIST_DB`` above and ``NORMAL_TWIST_DB`` below the low group;
* frequency: the phase advance of each tone between the two blocks measures its frequency offset, which must
  be within ``MAX_FREQ_DEVIATION`` (Q.24: accept ±1.5 %, reject ±3.5 %);
* dominance: on the 20 ms window each tone is ``MIN_DOMINANCE_DB`` above the other tones of its group.

A digit is reported once, when ``HITS_TO_REPORT`` consecutive windows agree (three 10 ms blocks, so tones of
40 ms or more are always found and tones under ~26 ms never), and the detector re-arms after
``PAUSE_WINDOWS`` windows without that digit (so a held key is one digit and a 10 ms drop-out does not split
it). All per-leg state lives in numpy arrays indexed by slot.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from ..codecs.telephone_event import EVENTS, TelephoneEvent, digit_event, pack_event_into

__all__ = [
    "DIGITS",
    "GAP",
    "HIGH_FREQS",
    "LOW_FREQS",
    "GoertzelDetector",
    "Rfc4733Receiver",
    "Rfc4733Sender",
]

RATE = 8000
FRAME = 160
BLOCK = 80
LOW_FREQS = (697.0, 770.0, 852.0, 941.0)
HIGH_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)
DIGITS = "123A456B789C*0#D"  # row * 4 + column
_FREQS = np.array(LOW_FREQS + HIGH_FREQS)
_OMEGA = 2 * np.pi * _FREQS / RATE
# Amplitude of a 0 dBm0 sine in int16 PCM: G.711 full scale (a sine at 32768 peak) is +3.17 dBm0.
DBM0_AMPLITUDE = 32768.0 * 10 ** (-3.17 / 20)
# Rows per matrix product: keeps each OpenBLAS call below its multithreading threshold (m*n*k < 262144).
# At this size worker threads cost far more than they save, and on a busy machine they make a call 5x slower.
_CHUNK = 96


def _db(x: float) -> float:
    return float(10 ** (x / 10))


class GoertzelDetector:
    """In-band DTMF detection for up to ``capacity`` legs, all legs in one call.

    ``process(slots, frames)`` takes one 20 ms frame (160 int16 samples of decoded G.711) for each of ``n``
    legs (``slots``: their slot numbers, unique, each < capacity) and returns ``[(slot, digit), ...]`` for the
    digits that completed in this frame. Feed each leg's frames in order, every 20 ms; call ``reset(slot)``
    when a slot is given to a new leg.
    """

    MIN_LEVEL_DBM0 = -30.0  # per tone; Q.24 asks for operation down to about -26 dBm0
    MIN_TONE_FRACTION = 0.93  # of each block's energy in the two tones
    MAX_BLOCK_STEP_DB = 1.0  # energy change between the two blocks of a window
    REVERSE_TWIST_DB = 5.0  # high group above low group (Q.24: accept 4 dB)
    NORMAL_TWIST_DB = 9.0  # high group below low group (Q.24: accept 8 dB)
    MAX_FREQ_DEVIATION = 0.025  # Q.24: accept 1.5 %, reject 3.5 %
    MIN_DOMINANCE_DB = 8.0  # over the other frequencies of the same group
    HITS_TO_REPORT = 2  # consecutive 20 ms windows (hop 10 ms): three blocks, 30 ms
    PAUSE_WINDOWS = 4  # windows without the digit before it can be reported again

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        t = np.arange(BLOCK)[:, None]
        # Hamming window for levels, energy ratio and frequency: its sidelobes are below -42 dB, so the other
        # group's tone (268 Hz or more away) does not disturb them. The rectangular DFT is only used for the
        # 20 ms dominance check, where its narrow main lobe separates neighbouring frequencies of a group.
        win = 0.54 - 0.46 * np.cos(2 * np.pi * (np.arange(BLOCK) + 0.5) / BLOCK)
        cos, sin = np.cos(_OMEGA * t), np.sin(_OMEGA * t)
        # X = y[0:8] - 1j * y[8:16] (rectangular), y[16:24] - 1j * y[24:32] (Hamming)
        self._basis = np.hstack([cos, sin, cos * win[:, None], sin * win[:, None]]).astype(np.float32)
        self._energy_basis = np.stack([np.ones(BLOCK), win * win], axis=1).astype(np.float32)
        # exp(-1j w 80) removes the nominal phase advance of each frequency over one block
        self._rot_c = np.cos(_OMEGA * BLOCK).astype(np.float32)
        self._rot_s = np.sin(_OMEGA * BLOCK).astype(np.float32)
        # a tone d Hz off its bin turns by 2 pi d / 100 per block; the allowed angle per bin, as a cosine
        self._cos_max = np.cos(2 * np.pi * _FREQS * self.MAX_FREQ_DEVIATION * BLOCK / RATE).astype(np.float32)
        amp = DBM0_AMPLITUDE * 10 ** (self.MIN_LEVEL_DBM0 / 20)
        self._p_min = np.float32((amp * win.sum() / 2) ** 2)
        # a sine of amplitude A: |X|^2 = (A sum(w) / 2)^2 and windowed energy A^2 sum(w^2) / 2
        self._frac = np.float32(self.MIN_TONE_FRACTION * win.sum() ** 2 / (2 * (win * win).sum()))
        self._screen = self._frac * np.float32(10 ** (-1.5 / 10))  # below the test after correction
        self._step = np.float32(_db(self.MAX_BLOCK_STEP_DB))
        self._rev = np.float32(_db(self.REVERSE_TWIST_DB))
        self._norm = np.float32(_db(self.NORMAL_TWIST_DB))
        self._dom = np.float32(_db(self.MIN_DOMINANCE_DB))
        # per-slot state
        self._prev_y = np.zeros((capacity, 32), dtype=np.float32)  # last block's DFTs
        self._prev_e = np.zeros((capacity, 2), dtype=np.float32)  # last block's energy, windowed energy
        self._cand = np.full(capacity, -1, dtype=np.int8)  # digit code of the last window, -1 none
        self._count = np.zeros(capacity, dtype=np.int16)  # consecutive windows with that code
        self._last = np.full(capacity, -1, dtype=np.int8)  # last reported code
        self._gap = np.zeros(capacity, dtype=np.int16)  # consecutive windows without the last reported code
        self._armed = np.ones(capacity, dtype=bool)

    def reset(self, slot: int) -> None:
        """Forget everything about ``slot`` (a new leg takes it)."""
        self._prev_y[slot] = 0
        self._prev_e[slot] = 0
        self._cand[slot] = -1
        self._count[slot] = 0
        self._last[slot] = -1
        self._gap[slot] = 0
        self._armed[slot] = True

    def classify(self, slots: npt.NDArray[np.integer], frames: np.ndarray) -> npt.NDArray[np.int8]:
        """Per-window decisions, shape (n, 2): digit code (index into DIGITS) or -1; keeps the block history.

        This is the signal part of :meth:`process`, without the duration and pause logic.
        """
        n = len(slots)
        x = np.asarray(frames, dtype=np.float32).reshape(2 * n, BLOCK)
        ys = np.empty((n, 3, 32), dtype=np.float32)  # blocks: previous, first half, second half
        y = np.empty((2 * n, 32), dtype=np.float32)
        e = np.empty((2 * n, 2), dtype=np.float32)
        x2 = x * x
        for i in range(0, 2 * n, _CHUNK):
            np.matmul(x[i : i + _CHUNK], self._basis, out=y[i : i + _CHUNK])
            np.matmul(x2[i : i + _CHUNK], self._energy_basis, out=e[i : i + _CHUNK])
        ys[:, 1:] = y.reshape(n, 2, 32)
        ys[:, 0] = self._prev_y[slots]
        es = np.empty((n, 3, 2), dtype=np.float32)
        es[:, 1:] = e.reshape(n, 2, 2)
        es[:, 0] = self._prev_e[slots]
        self._prev_y[slots] = ys[:, 2]
        self._prev_e[slots] = es[:, 2]
        codes = np.full((n, 2), -1, dtype=np.int8)

        # Cheap screen on every block: could the strongest low and high bins hold the energy? (An upper bound
        # of the full test below, with room for the scalloping correction.) Speech, music and silence stop here.
        re = ys[..., 16:24]
        im = ys[..., 24:32]
        p = re * re + im * im  # Hamming block powers (n, 3, 8)
        top = p[..., :4].max(-1) + p[..., 4:].max(-1)
        blk = top >= self._screen * es[..., 1]
        ii, ww = np.nonzero(blk[:, :2] & blk[:, 1:])
        if len(ii) == 0:
            return codes
        ya = ys[ii, ww]  # (m, 32): the window's first block
        yb = ys[ii, ww + 1]
        ea = es[ii, ww]  # (m, 2): energy, windowed energy
        eb = es[ii, ww + 1]
        pa = p[ii, ww]  # (m, 8)
        pb = p[ii, ww + 1]
        s = pa + pb
        row = s[:, :4].argmax(-1)
        col = s[:, 4:].argmax(-1)
        idx = np.stack([row, col + 4], -1)  # (m, 2)
        pa_t = np.take_along_axis(pa, idx, -1)
        pb_t = np.take_along_axis(pb, idx, -1)
        ra = np.take_along_axis(ya[:, 16:24], idx, -1)
        ia = np.take_along_axis(ya[:, 24:32], idx, -1)
        rb = np.take_along_axis(yb[:, 16:24], idx, -1)
        ib = np.take_along_axis(yb[:, 24:32], idx, -1)
        # Re(Xb conj(Xa) exp(-1j w 80)), with X = re - 1j im: cos of the turn beyond the nominal one, times |Xa Xb|
        turn = (rb * ra + ib * ia) * self._rot_c[idx] + (rb * ia - ib * ra) * self._rot_s[idx]
        root = np.sqrt(pa_t * pb_t)
        # The turn measures each tone's offset from its bin (x bins of 100 Hz); undo the window's scalloping
        # loss (Hamming, 80 samples: about -6.9 x^2 dB) so that levels and the energy ratio stay exact.
        x2 = np.square(
            np.arccos(np.clip(turn / np.maximum(root, 1e-12), -1, 1)) * np.float32(1 / (2 * np.pi))
        )
        gain = np.exp(np.float32(6.9 * np.log(10) / 10) * x2)
        pa_t = pa_t * gain
        pb_t = pb_t * gain

        ok = (np.minimum(pa_t, pb_t) >= self._p_min).all(-1)  # level
        ok &= pa_t.sum(-1) >= self._frac * ea[:, 1]  # the two tones hold the energy
        ok &= pb_t.sum(-1) >= self._frac * eb[:, 1]
        ok &= (ea[:, 0] <= self._step * eb[:, 0]) & (eb[:, 0] <= self._step * ea[:, 0])  # steady, full blocks
        s_r = pa_t[:, 0] + pb_t[:, 0]
        s_c = pa_t[:, 1] + pb_t[:, 1]
        ok &= (s_c <= self._rev * s_r) & (s_r <= self._norm * s_c)  # twist
        ok &= (turn >= self._cos_max[idx] * root).all(-1)  # frequency

        # rectangular 20 ms window (both blocks): each tone dominates the other frequencies of its group
        ra, ia, rb, ib = ya[:, 0:8], ya[:, 8:16], yb[:, 0:8], yb[:, 8:16]
        p160 = ra * ra + ia * ia + rb * rb + ib * ib
        p160 += 2 * ((rb * ra + ib * ia) * self._rot_c + (rb * ia - ib * ra) * self._rot_s)
        best = np.take_along_axis(p160, idx, -1)  # (m, 2)
        p160[np.arange(len(ii))[:, None], idx] = 0
        ok &= best[:, 0] >= self._dom * p160[:, :4].max(-1)
        ok &= best[:, 1] >= self._dom * p160[:, 4:].max(-1)
        codes[ii[ok], ww[ok]] = (row * 4 + col)[ok]
        return codes

    def process(self, slots: npt.NDArray[np.integer], frames: np.ndarray) -> list[tuple[int, str]]:
        """Detect on one 20 ms frame per leg: ``frames`` (n, 160) int16 for ``slots`` (n,).

        Returns ``(slot, digit)`` for each digit that reached the minimum duration in this frame; a digit
        is reported once however long it is held.
        """
        slots = np.asarray(slots)
        if len(slots) == 0:
            return []
        codes = self.classify(slots, frames)
        cand = self._cand[slots]
        count = self._count[slots]
        last = self._last[slots]
        gap = self._gap[slots]
        armed = self._armed[slots]
        found: list[tuple[int, str]] = []
        for w in range(2):
            c = codes[:, w]
            hit = c >= 0
            count = np.where(hit & (c == cand), np.minimum(count + 1, 1000), hit).astype(np.int16)
            cand = c
            gap = np.where(c == last, 0, np.minimum(gap + 1, 1000)).astype(np.int16)
            armed |= gap >= self.PAUSE_WINDOWS
            fire = armed & (count >= self.HITS_TO_REPORT)
            if fire.any():
                where = np.flatnonzero(fire)
                found.extend((int(slots[i]), DIGITS[c[i]]) for i in where.tolist())
                last = np.where(fire, c, last)
                armed &= ~fire
                gap[fire] = 0
        self._cand[slots] = cand
        self._count[slots] = count
        self._last[slots] = last
        self._gap[slots] = gap
        self._armed[slots] = armed
        return found


# --------------------------------------------------------------------------------------------- RFC 4733

_TS_MASK = 0xFFFFFFFF


def _ts_newer(a: int, b: int) -> bool:
    """True when RTP timestamp ``a`` is after ``b`` (32-bit serial arithmetic)."""
    return a != b and ((a - b) & _TS_MASK) < 0x80000000


class Rfc4733Receiver:
    """Turns a leg's RFC 4733 telephone-event packets into digits, one per event.

    ``feed(timestamp, event, marker)`` takes each packet's RTP timestamp, decoded payload and marker bit and
    returns the digit on the first packet of a new event (a new, later RTP timestamp; or the marker bit with a
    different event code), else None. The start packet may be lost: the first packet seen counts. Repeated
    packets of the same event (updates, the three end packets) and late packets of older events return None.
    Events above 15 (not DTMF) are ignored. A segment of an over-long event (RFC 4733 §2.5.2.3: new timestamp
    right after the previous segment, same event, no marker, no end seen) continues the same event.

    When an event completes (end bit seen, or a new event starts first) ``completed`` is set to
    ``(digit, duration_ms)``; :meth:`pop_completed` returns and clears it.
    """

    __slots__ = ("_base", "_duration", "_ended", "_event", "_ts", "clock_rate", "completed")

    def __init__(self, clock_rate: int = RATE) -> None:
        self.clock_rate = clock_rate
        self._ts: int | None = None
        self._event = -1
        self._ended = True
        self._duration = 0  # of the current segment, timestamp units
        self._base = 0  # duration of earlier segments of a long event
        self.completed: tuple[str, int] | None = None

    @property
    def digit(self) -> str | None:
        """The digit of the event in progress (None when none, or it has ended)."""
        return None if self._ended else EVENTS[self._event]

    @property
    def duration_ms(self) -> int:
        """Duration of the current (or last) event so far, in milliseconds."""
        return (self._base + self._duration) * 1000 // self.clock_rate

    def pop_completed(self) -> tuple[str, int] | None:
        """The last completed event as ``(digit, duration_ms)``, once."""
        done, self.completed = self.completed, None
        return done

    def _finish(self) -> None:
        if not self._ended and self._event >= 0:
            self._ended = True
            self.completed = (EVENTS[self._event], self.duration_ms)

    def feed(self, timestamp: int, event: TelephoneEvent, marker: bool) -> str | None:
        """One telephone-event packet; returns the digit when it starts a new event."""
        code = event.event
        if code > 15:
            return None
        ts = self._ts
        if ts is None or _ts_newer(timestamp, ts):
            if (
                ts is not None
                and not marker
                and not self._ended
                and code == self._event
                and ((timestamp - ts) & _TS_MASK) <= self._duration + 2 * FRAME
                and self._duration >= 0x8000
            ):
                # next segment of a long event
                self._base += (timestamp - ts) & _TS_MASK
                self._ts = timestamp
                self._duration = event.duration
                if event.end:
                    self._finish()
                return None
            self._finish()
            self._ts = timestamp
            self._event = code
            self._ended = False
            self._base = 0
            self._duration = event.duration
            if event.end:
                self._finish()
            return EVENTS[code]
        if timestamp == ts:
            if code != self._event:
                if not marker:
                    return None  # inconsistent packet: ignore
                self._finish()  # a different event reusing the timestamp, announced by the marker
                self._event = code
                self._ended = False
                self._base = 0
                self._duration = event.duration
                if event.end:
                    self._finish()
                return EVENTS[code]
            if not self._ended:
                self._duration = max(self._duration, event.duration)
                if event.end:
                    self._finish()
        return None  # same event again, or a late packet of an older one


GAP: tuple[bytes, bool, int, bool] = (b"", False, 0, False)
"""What :meth:`Rfc4733Sender.next_packet` returns for a tick of the pause between two events."""


class Rfc4733Sender:
    """Sends a digit string as RFC 4733 events, one step per 20 ms tick.

    Call :meth:`next_packet` once per tick while the leg is sending DTMF. It returns

    * ``(payload, marker, ts_offset, end)`` for a telephone-event packet: ``payload`` is the 4-byte event
      block, ``marker`` is set on the first packet of each event, ``end`` on the final packets, and
      ``ts_offset`` is the number of ticks since the event's first packet, so the RTP timestamp to send is
      ``timestamp_of_this_tick - ts_offset * samples_per_tick`` (fixed for the whole event; the next event
      gets a later one). The duration field grows by ``samples_per_tick`` each tick; the last one carries the
      E bit and is sent three times (on three ticks).
    * :data:`GAP` (empty payload) for a tick of the pause between events: send no event packet (normal audio
      or nothing);
    * ``None`` once everything has been sent (``done`` is then True).

    ``plan()`` appends more digits (they follow after a pause). Iterating the sender yields the same steps
    until done. Per event: ceil(duration_ms / 20) packets, two more end copies, then the pause before the
    next event (``gap_ms``, at least the two ticks of end copies).
    """

    __slots__ = ("_events_planned", "_steps", "clock_rate", "duration_ms", "gap_ms", "ptime_ms", "volume")

    def __init__(
        self,
        digits: str = "",
        duration_ms: int = 100,
        gap_ms: int = 60,
        volume: int = 10,
        *,
        ptime_ms: int = 20,
        clock_rate: int = RATE,
    ) -> None:
        self.duration_ms = duration_ms
        self.gap_ms = gap_ms
        self.volume = volume
        self.ptime_ms = ptime_ms
        self.clock_rate = clock_rate
        self._steps: deque[tuple[bytes, bool, int, bool]] = deque()
        self._events_planned = 0
        if digits:
            self.plan(digits)

    @property
    def samples_per_tick(self) -> int:
        """RTP timestamp units per tick (160 for 20 ms at 8 kHz)."""
        return self.clock_rate * self.ptime_ms // 1000

    @property
    def done(self) -> bool:
        """True when every planned step has been returned."""
        return not self._steps

    def plan(
        self,
        digits: str,
        duration_ms: int | None = None,
        gap_ms: int | None = None,
        volume: int | None = None,
    ) -> None:
        """Queue ``digits`` (0-9 * # A-D, case-insensitive); ValueError for anything else."""
        codes = [digit_event(d) for d in digits]  # validate all before queueing any
        duration_ms = self.duration_ms if duration_ms is None else duration_ms
        gap_ms = self.gap_ms if gap_ms is None else gap_ms
        volume = self.volume if volume is None else volume
        if not 0 <= volume <= 63:
            raise ValueError(f"volume {volume} out of range 0..63")
        spt = self.samples_per_tick
        ticks = max(1, math.ceil(duration_ms / self.ptime_ms))
        gap_ticks = max(0, math.ceil(gap_ms / self.ptime_ms) - 2)
        buf = bytearray(4)
        for code in codes:
            if self._events_planned:
                self._steps.extend([GAP] * gap_ticks)
            self._events_planned += 1
            for k in range(ticks):
                end = k == ticks - 1
                pack_event_into(buf, 0, code, end, volume, min((k + 1) * spt, 0xFFFF))
                self._steps.append((bytes(buf), k == 0, k, end))
            final = self._steps[-1][0]
            self._steps.append((final, False, ticks, True))
            self._steps.append((final, False, ticks + 1, True))

    def next_packet(self) -> tuple[bytes, bool, int, bool] | None:
        """The step for this tick (see the class docstring); None when done."""
        return self._steps.popleft() if self._steps else None

    def __iter__(self) -> Iterator[tuple[bytes, bool, int, bool]]:
        while self._steps:
            yield self._steps.popleft()
