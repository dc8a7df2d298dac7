"""The media engine: RTP legs driven by one 20 ms ticker, in-process.

Every call leg owns an RTP/RTCP socket pair from the configured port range.
Inbound packets are drained with ``loop.add_reader`` + ``recv*_into`` into
preallocated buffers; audio payloads land in a per-leg ring inside one numpy
array so the ticker can decode, detect DTMF and record for all legs at once.
Outbound audio (prompts, tones, silence, RFC 4733 events) is sent by the
ticker from pre-encoded frames with ``struct.pack_into``; bridged legs relay
packets as they arrive, rewriting SSRC, sequence and timestamp and
transcoding PCMU<->PCMA by table when the two legs' codecs differ.

The public API is on :class:`Leg` (``play``, ``stop``, ``tone``,
``collect_digits``, ``send_dtmf``, ``record``...) and
:meth:`MediaEngine.bridge`; events (:class:`DigitEvent`,
:class:`PlaybackDone`, :class:`RtpTimeout`) go to ``Leg.on_event``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..codecs.g711 import ALAW_DECODE, ALAW_TO_ULAW, ULAW_DECODE, ULAW_TO_ALAW, alaw_encode, ulaw_encode
from ..codecs.telephone_event import EVENTS, decode_event
from .dtmf import GoertzelDetector, Rfc4733Receiver, Rfc4733Sender
from .ports import PortAllocator
from .prompts import PromptLibrary
from .recorder import RecorderThread, Recording
from .rtp import build_rr, build_sr, ntp_from_unix, parse_rtcp
from .tones import tone_frame

log = logging.getLogger("softswitch.media")

FRAME = 160  # samples (and G.711 bytes) per 20 ms
TICK = 0.020
RING = 4  # inbound frames buffered per leg between ticks
HEADER = struct.Struct("!BBHII")
RTCP_EVERY_TICKS = 250  # 5 s
CODEC_IDS = {"pcmu": 0, "pcma": 1}
STATIC_PT = {"pcmu": 0, "pcma": 8}
SILENCE = {"pcmu": 0xFF, "pcma": 0xD5}
_DECODE = np.concatenate([ULAW_DECODE, ALAW_DECODE]).astype(np.int16)
_TRANSCODE = {  # (from, to) -> bytes.translate table
    ("pcmu", "pcma"): bytes(ULAW_TO_ALAW.astype(np.uint8).tolist()),
    ("pcma", "pcmu"): bytes(ALAW_TO_ULAW.astype(np.uint8).tolist()),
}


class Mode(enum.Enum):
    """What the ticker sends on a leg."""

    IDLE = 0  # nothing (no remote yet, or held)
    SILENCE = 1
    PROMPT = 2
    TONE = 3
    BRIDGED = 4  # the peer's packets are relayed on arrival; the ticker sends nothing


@dataclass(frozen=True, slots=True)
class DigitEvent:
    leg: Leg
    digit: str
    source: str  # "rfc4733" | "inband" | "info"


@dataclass(frozen=True, slots=True)
class PlaybackDone:
    leg: Leg
    completed: bool  # False when stopped or interrupted by a digit (barge-in)


@dataclass(frozen=True, slots=True)
class RtpTimeout:
    leg: Leg
    silent_for: float


MediaEvent = DigitEvent | PlaybackDone | RtpTimeout
_PROMPT = Mode.PROMPT
_TONE = Mode.TONE


class MediaError(Exception):
    """A media operation that cannot be done (unknown prompt, no free port, ...)."""


class _Collector:
    __slots__ = ("deadline", "digits", "first_timeout", "future", "inter_timeout", "max_digits", "terminator")

    def __init__(
        self,
        max_digits: int,
        terminator: str,
        first_timeout: float,
        inter_timeout: float,
        now: float,
        future: asyncio.Future[str],
    ) -> None:
        self.max_digits = max_digits
        self.terminator = terminator
        self.first_timeout = first_timeout
        self.inter_timeout = inter_timeout
        self.deadline = now + first_timeout
        self.digits = ""
        self.future = future


class Leg:
    """One RTP stream endpoint of a call: the engine's unit of media."""

    def __init__(
        self, engine: MediaEngine, slot: int, rtp: socket.socket, rtcp: socket.socket, port: int
    ) -> None:
        self.engine = engine
        self.slot = slot
        self.rtp_sock = rtp
        self.rtcp_sock = rtcp
        self.port = port
        self.codec = "pcmu"
        self.pt = 0
        self.te_pt: int | None = 101
        self.remote: tuple[str, int] | None = None
        self.rtcp_remote: tuple[str, int] | None = None
        self.latched = False
        self.connected = False  # the RTP socket is connect()ed to the latched remote (cheaper send/recv)
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.ts_base = secrets.randbits(32)
        self.mode = Mode.IDLE
        self.language = engine.language
        self.on_event: Callable[[MediaEvent], None] | None = None
        # outbound
        self.out = bytearray(HEADER.size + FRAME)
        self.out_mv = memoryview(self.out)
        self.frames: np.ndarray | None = None  # (n, 160) uint8 being played
        self.frames_mv: memoryview | None = None
        self.frame_index = 0
        self.n_frames = 0
        self.barge_in = False
        self.play_future: asyncio.Future[bool] | None = None
        self.tone_name: str | None = None
        self.dtmf_out: deque[tuple[Rfc4733Sender, asyncio.Future[None]]] = deque()
        self.marker = True
        self.last_out: memoryview | None = None  # the audio frame sent this tick (for recording)
        # inbound
        self.rfc4733 = Rfc4733Receiver()
        self.inband = True  # until RFC 4733 packets are seen ("auto")
        self.digits: deque[str] = deque(maxlen=32)  # type-ahead
        self.collector: _Collector | None = None
        self.peer: Leg | None = None
        self.recording: Recording | None = None
        self.record_partner: Leg | None = None  # whose inbound audio is the right channel
        self.packets_in = 0
        self.packets_out = 0
        self.octets_out = 0
        self.bad_packets = 0
        self.last_rx = engine.now
        self.timed_out = False
        self.rtcp_last: list[Any] = []
        self.closed = False
        self.sending = False  # in the ticker's send set
        self.consuming = False  # inbound audio is buffered for the ticker (recording, in-band DTMF)
        self.bridge_ts: int | None = None  # timestamp offset from the bridge peer's timeline to ours
        self.relay = bytearray(HEADER.size + 1500)
        self.relay_mv = memoryview(self.relay)

    # ---- configuration ---------------------------------------------------
    def configure(
        self,
        *,
        codec: str | None = None,
        payload_type: int | None = None,
        telephone_event_pt: int | bool | None = False,
        remote: tuple[str, int] | None = None,
    ) -> None:
        """Set the negotiated codec, payload types and the remote address from SDP."""
        if codec is not None:
            if codec not in CODEC_IDS:
                raise MediaError(f"unsupported codec {codec!r}; expected pcmu or pcma")
            self.codec = codec
            self.pt = STATIC_PT[codec] if payload_type is None else payload_type
            self.engine._codec_id[self.slot] = CODEC_IDS[codec]
            self.engine._ring[self.slot] = SILENCE[codec]
        if telephone_event_pt is not False:
            self.te_pt = telephone_event_pt if isinstance(telephone_event_pt, int) else None
        if remote is not None:
            if remote != self.remote:
                if self.connected:
                    self.engine._reopen(self)
                self.latched = False
            self.remote = remote
            self.rtcp_remote = (remote[0], remote[1] + 1)
            if self.mode == Mode.IDLE:
                self.mode = Mode.SILENCE
        self.engine._update_sets(self)

    # ---- operations --------------------------------------------------------
    def play(self, prompts: Sequence[str | np.ndarray], *, barge_in: bool = True) -> asyncio.Future[bool]:
        """Play prompts (names in the leg's language, or int16 PCM arrays) in order.

        The future resolves True when all were played, False when stopped or
        interrupted by a digit (with ``barge_in``; the digit stays queued for
        :meth:`collect_digits`). Replaces any playback or tone in progress.
        """
        frames = self.engine._frames_for(prompts, self.language, self.codec)
        self._finish_playback(False)
        fut: asyncio.Future[bool] = self.engine.loop.create_future()
        if barge_in and self.digits:
            fut.set_result(False)  # a digit was already typed ahead: skip the prompt
            return fut
        self.frames = frames
        self.frames_mv = memoryview(frames.reshape(-1))  # type: ignore[arg-type]
        self.frame_index = 0
        self.n_frames = len(frames)
        self.barge_in = barge_in
        self.play_future = fut
        self.tone_name = None
        self.mode = Mode.PROMPT
        self.marker = True
        self.engine._update_sets(self)
        return fut

    def tone(self, name: str) -> None:
        """Loop a named tone (ringback_cn, busy_us, ...) until stop() or play()."""
        tone_frame(name, 0)  # raises for unknown names
        self._finish_playback(False)
        self.tone_name = name
        self.frame_index = 0
        self.mode = Mode.TONE
        self.engine._update_sets(self)

    def stop(self) -> None:
        """Stop a prompt or tone; silence follows."""
        self._finish_playback(False)
        if self.mode in (Mode.PROMPT, Mode.TONE):
            self.mode = Mode.SILENCE if self.remote else Mode.IDLE
        self.tone_name = None
        self.engine._update_sets(self)

    def collect_digits(
        self,
        max_digits: int,
        *,
        terminator: str = "#",
        first_timeout: float = 5.0,
        inter_digit_timeout: float = 3.0,
    ) -> asyncio.Future[str]:
        """Collect up to ``max_digits`` digits; the terminator ends early and is not returned.

        Resolves with what was collected when a timeout expires ("" for no input).
        Digits typed ahead (e.g. during a prompt) count.
        """
        if self.collector is not None and not self.collector.future.done():
            self.collector.future.cancel()
        fut: asyncio.Future[str] = self.engine.loop.create_future()
        now = self.engine.now
        self.collector = _Collector(max_digits, terminator, first_timeout, inter_digit_timeout, now, fut)
        self.engine._collectors.add(self)
        while self.digits and not fut.done():
            self._collect(self.digits.popleft())
        return fut

    def send_dtmf(self, digits: str, *, duration_ms: int = 100) -> asyncio.Future[None]:
        """Send digits as RFC 4733 events (needs a negotiated telephone-event payload type)."""
        if self.te_pt is None:
            raise MediaError("telephone-event was not negotiated on this leg")
        for d in digits:
            if d.upper() not in EVENTS:
                raise MediaError(f"not a DTMF digit: {d!r}")
        fut: asyncio.Future[None] = self.engine.loop.create_future()
        self.dtmf_out.append((Rfc4733Sender(digits.upper(), duration_ms=duration_ms), fut))
        self.engine._update_sets(self)
        return fut

    def feed_digit(self, digit: str, source: str = "info") -> None:
        """A digit from outside the media path (SIP INFO): same path as RTP digits."""
        self.engine._digit(self, digit, source)

    def record(self, path: str | Path, *, stereo: bool = True, fmt: str | None = None) -> Recording:
        """Record this leg: its inbound audio left, the other party (bridge peer or what we play) right."""
        if self.engine.recorder is None:
            raise MediaError("recording is not enabled")
        fmt = fmt or Path(path).suffix.lstrip(".").lower() or "wav"
        if fmt not in ("wav", "flac"):
            raise MediaError(f"unsupported recording format {fmt!r}; expected wav or flac")
        self.recording = self.engine.recorder.open_recording(
            Path(path), stereo=stereo, fmt="wav" if fmt == "wav" else "flac"
        )
        self.record_partner = self.peer
        self.engine._update_sets(self)
        return self.recording

    def pause_recording(self) -> None:
        if self.recording is not None:
            self.recording.pause(self.engine.now)

    def resume_recording(self) -> None:
        if self.recording is not None:
            self.recording.resume(self.engine.now)

    def stop_recording(self) -> None:
        if self.recording is not None:
            self.recording.close()
            self.recording = None
            self.engine._update_sets(self)

    # ---- internals ---------------------------------------------------------
    def _finish_playback(self, completed: bool) -> None:
        fut = self.play_future
        if fut is not None:
            self.play_future = None
            self.frames = None
            self.frames_mv = None
            if not fut.done():
                fut.set_result(completed)
            self._emit(PlaybackDone(self, completed))

    def _collect(self, digit: str) -> None:
        c = self.collector
        assert c is not None
        if digit == c.terminator:
            self._end_collect()
            return
        c.digits += digit
        c.deadline = self.engine.now + c.inter_timeout
        if len(c.digits) >= c.max_digits:
            self._end_collect()

    def _end_collect(self) -> None:
        c = self.collector
        self.collector = None
        self.engine._collectors.discard(self)
        if c is not None and not c.future.done():
            c.future.set_result(c.digits)

    def _emit(self, event: MediaEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("media event handler failed")

    def __repr__(self) -> str:
        return f"<Leg {self.slot} :{self.port} {self.codec} {self.mode.name} -> {self.remote}>"


class MediaEngine:
    """All legs of the process, one ticker, vectorised inbound processing."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        ports: tuple[int, int] = (20000, 39999),
        prompts: PromptLibrary | None = None,
        recorder: RecorderThread | None = None,
        language: str = "zh",
        capacity: int = 4096,
        rtp_timeout_s: float = 60.0,
    ) -> None:
        self.host = host
        self.allocator = PortAllocator(ports[0], ports[1], host)
        self.prompts = prompts
        self.recorder = recorder
        self.language = language
        self.capacity = capacity
        self.rtp_timeout_s = rtp_timeout_s
        self.loop: asyncio.AbstractEventLoop = asyncio.get_event_loop_policy().get_event_loop()
        self.now = 0.0
        self.legs: dict[int, Leg] = {}
        self._free_slots = list(range(capacity - 1, -1, -1))
        self._ring = np.full((capacity, RING, FRAME), 0xFF, dtype=np.uint8)
        self._ring_mv = memoryview(self._ring.reshape(-1))  # type: ignore[arg-type]
        self._rx_w = [0] * capacity
        self._rx_r = np.zeros(capacity, dtype=np.int64)
        self._rx_w_np = np.zeros(capacity, dtype=np.int64)
        self._codec_id = np.zeros(capacity, dtype=np.int64)
        self._rxbuf = bytearray(2048)
        self._rxmv = memoryview(self._rxbuf)
        self._senders: dict[int, Leg] = {}
        self._consumers: dict[int, Leg] = {}
        self._recorders: dict[int, Leg] = {}
        self._consumer_slots = np.zeros(0, dtype=np.int64)
        self._consumers_dirty = False
        self._inband = np.zeros(capacity, dtype=bool)
        self._collectors: set[Leg] = set()
        self.detector = GoertzelDetector(capacity)
        self._tick_no = 0
        self._start = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self.lateness: deque[float] = deque(maxlen=30000)  # ticker lateness samples (s)
        self._silence = {name: bytes([code]) * FRAME for name, code in SILENCE.items()}
        self._pcm_cache: dict[int, np.ndarray] = {}

    # ---- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.now = self.loop.time()
        self._start = self.now
        self._tick_no = 0
        self._handle = self.loop.call_at(self._start + TICK, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for leg in list(self.legs.values()):
            self.release(leg)

    def create_leg(self) -> Leg:
        """A new leg with its own RTP/RTCP ports; configure() it from SDP."""
        if not self._free_slots:
            raise MediaError(f"media engine full ({self.capacity} legs)")
        try:
            rtp, rtcp, port = self.allocator.allocate()
        except Exception as e:
            raise MediaError(f"no free RTP port: {e}") from None
        slot = self._free_slots.pop()
        leg = Leg(self, slot, rtp, rtcp, port)
        self.legs[slot] = leg
        self._rx_w[slot] = 0
        self._rx_w_np[slot] = 0
        self._rx_r[slot] = 0
        self._codec_id[slot] = 0
        self._ring[slot] = 0xFF
        self.detector.reset(slot)
        self.loop.add_reader(rtp.fileno(), self._on_rtp, leg)
        self.loop.add_reader(rtcp.fileno(), self._on_rtcp, leg)
        return leg

    def _reopen(self, leg: Leg) -> None:
        """Give a connected leg a fresh unconnected RTP socket on the same port."""
        self.loop.remove_reader(leg.rtp_sock.fileno())
        try:
            leg.rtp_sock = self.allocator.rebind_rtp(leg.port)
        except Exception as e:
            raise MediaError(str(e)) from None
        leg.connected = False
        self.loop.add_reader(leg.rtp_sock.fileno(), self._on_rtp, leg)

    def release(self, leg: Leg) -> None:
        """Stop everything on the leg and give its ports back."""
        if leg.closed:
            return
        leg.closed = True
        if leg.peer is not None:
            self.unbridge(leg)
        leg._finish_playback(False)
        if leg.collector is not None:
            leg._end_collect()
        while leg.dtmf_out:
            _, fut = leg.dtmf_out.popleft()
            if not fut.done():
                fut.cancel()
        leg.stop_recording()
        leg.mode = Mode.IDLE
        self._update_sets(leg)
        self.loop.remove_reader(leg.rtp_sock.fileno())
        self.loop.remove_reader(leg.rtcp_sock.fileno())
        self.allocator.release(leg.port)
        leg.rtp_sock.close()
        leg.rtcp_sock.close()
        del self.legs[leg.slot]
        self._free_slots.append(leg.slot)

    # ---- bridging ----------------------------------------------------------
    def bridge(self, a: Leg, b: Leg) -> None:
        """Relay a's inbound to b and b's inbound to a (transcoding when codecs differ)."""
        for leg in (a, b):
            if leg.peer is not None:
                self.unbridge(leg)
            leg._finish_playback(False)
            leg.tone_name = None
        a.peer, b.peer = b, a
        # timestamps continue from what each side last sent
        a.bridge_ts = b.bridge_ts = None
        for leg in (a, b):
            leg.mode = Mode.BRIDGED
            leg.marker = True
            if leg.recording is not None and leg.record_partner is None:
                leg.record_partner = leg.peer
            self._update_sets(leg)

    def unbridge(self, leg: Leg) -> None:
        peer = leg.peer
        for one in (leg, peer):
            if one is None:
                continue
            one.peer = None
            one.record_partner = None
            one.mode = Mode.SILENCE if one.remote else Mode.IDLE
            one.marker = True
            self._update_sets(one)

    # ---- bookkeeping -------------------------------------------------------
    def _update_sets(self, leg: Leg) -> None:
        """Recompute which per-tick sets the leg is in after any state change (O(1))."""
        slot = leg.slot
        sending = (
            not leg.closed
            and leg.remote is not None
            and (leg.mode in (Mode.SILENCE, Mode.PROMPT, Mode.TONE) or bool(leg.dtmf_out))
        )
        if sending != leg.sending:
            leg.sending = sending
            if sending:
                self._senders[slot] = leg
            else:
                del self._senders[slot]
        if leg.recording is not None and not leg.closed:
            self._recorders[slot] = leg
        else:
            self._recorders.pop(slot, None)
        self._inband[slot] = leg.inband and not leg.closed
        for one in (leg, leg.peer):
            if one is None:
                continue
            partner_records = one.peer is not None and one.peer.recording is not None
            consuming = not one.closed and (one.recording is not None or one.inband or partner_records)
            if consuming != one.consuming:
                one.consuming = consuming
                if consuming:
                    self._consumers[one.slot] = one
                else:
                    del self._consumers[one.slot]
                self._consumers_dirty = True

    def _frames_for(self, prompts: Sequence[str | np.ndarray], language: str, codec: str) -> np.ndarray:
        parts: list[np.ndarray] = []
        for p in prompts:
            if isinstance(p, str):
                if self.prompts is None:
                    raise MediaError("no prompt library loaded")
                try:
                    parts.append(self.prompts.frames(language, p, codec))
                except KeyError:
                    raise MediaError(f"unknown prompt {p!r} ({language})") from None
            else:
                pcm = np.asarray(p, dtype=np.int16).reshape(-1)
                pad = (-len(pcm)) % FRAME
                if pad:
                    pcm = np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])
                enc = ulaw_encode(pcm) if codec == "pcmu" else alaw_encode(pcm)
                parts.append(np.asarray(enc, dtype=np.uint8).reshape(-1, FRAME))
        if not parts:
            return np.zeros((0, FRAME), dtype=np.uint8)
        return np.ascontiguousarray(np.concatenate(parts) if len(parts) > 1 else parts[0], dtype=np.uint8)

    # ---- digits ------------------------------------------------------------
    def _digit(self, leg: Leg, digit: str, source: str) -> None:
        if leg.closed:
            return
        if leg.mode == Mode.PROMPT and leg.barge_in:
            leg._finish_playback(False)
            leg.mode = Mode.SILENCE
            self._update_sets(leg)
        if leg.collector is not None:
            leg._collect(digit)
        else:
            leg.digits.append(digit)
        leg._emit(DigitEvent(leg, digit, source))

    # ---- inbound -----------------------------------------------------------
    def _on_rtp(self, leg: Leg) -> None:
        try:
            if leg.connected:  # the kernel only delivers packets from the latched source
                n = leg.rtp_sock.recv_into(self._rxbuf)
                addr = leg.remote
            else:
                n, addr = leg.rtp_sock.recvfrom_into(self._rxbuf)
        except OSError:
            return  # EAGAIN, or an ICMP error surfacing on Linux: nothing to do
        buf = self._rxbuf
        if n < 12:
            leg.bad_packets += 1
            return
        b0, b1, _seq, ts, _ssrc = HEADER.unpack_from(buf, 0)
        pt = b1 & 0x7F
        if b0 & 0xC0 != 0x80 or (pt != leg.pt and pt != leg.te_pt and pt != 13):
            leg.bad_packets += 1
            return
        start = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:  # header extension
            if n < start + 4:
                leg.bad_packets += 1
                return
            start += 4 + 4 * ((buf[start + 2] << 8) | buf[start + 3])
        end = n - buf[n - 1] if b0 & 0x20 else n
        if end < start:
            leg.bad_packets += 1
            return
        if not leg.connected:
            if addr != leg.remote and leg.latched:
                return  # not from the latched source
            self._latch(leg, addr)  # type: ignore[arg-type]
        leg.packets_in += 1
        leg.last_rx = self.now
        leg.timed_out = False
        peer = leg.peer
        if pt == leg.pt:
            if peer is not None and peer.remote is not None:
                self._relay(leg, peer, b1 & 0x80, ts, start, end, peer.pt, audio=True)
            if leg.consuming:
                slot = leg.slot
                w = self._rx_w[slot]
                off = (slot * RING + (w % RING)) * FRAME
                length = min(end - start, FRAME)
                self._ring_mv[off : off + length] = self._rxmv[start : start + length]
                self._rx_w[slot] = w + 1
        elif pt == leg.te_pt and end - start >= 4:
            if leg.inband:  # the phone sends RFC 4733: trust it, stop in-band detection
                leg.inband = False
                self._update_sets(leg)
            try:
                event = decode_event(bytes(self._rxmv[start : start + 4]))
            except ValueError:
                leg.bad_packets += 1
                return
            digit = leg.rfc4733.feed(ts, event, bool(b1 & 0x80))
            if digit is not None:
                self._digit(leg, digit, "rfc4733")
            if peer is not None and peer.remote is not None and peer.te_pt is not None:
                self._relay(leg, peer, b1 & 0x80, ts, start, end, peer.te_pt, audio=False)

    def _latch(self, leg: Leg, addr: tuple[str, int]) -> None:
        """Symmetric RTP: answer where the media comes from, and connect the socket to it."""
        leg.remote = addr
        leg.latched = True
        try:
            leg.rtp_sock.connect(addr)
            leg.connected = True
        except OSError:
            leg.connected = False
        if leg.mode == Mode.IDLE:
            leg.mode = Mode.SILENCE
        self._update_sets(leg)

    def _relay(
        self, src: Leg, dst: Leg, marker: int, ts: int, start: int, end: int, pt: int, audio: bool
    ) -> None:
        n = end - start
        if n > 1500:
            return
        base = dst.bridge_ts
        if base is None:
            # map the source's timestamps onto the destination's own timeline
            dst.bridge_ts = base = (dst.ts_base + FRAME * self._tick_no - ts) & 0xFFFFFFFF
            marker = 0x80
        dst.seq = seq = (dst.seq + 1) & 0xFFFF
        out = dst.relay_mv
        HEADER.pack_into(out, 0, 0x80, marker | pt, seq, (ts + base) & 0xFFFFFFFF, dst.ssrc)
        if audio and src.codec != dst.codec:
            out[12 : 12 + n] = self._rxbuf[start:end].translate(_TRANSCODE[(src.codec, dst.codec)])
        else:
            out[12 : 12 + n] = self._rxmv[start:end]
        try:
            if dst.connected:
                dst.rtp_sock.send(out[: 12 + n])
            else:
                dst.rtp_sock.sendto(out[: 12 + n], dst.remote)  # type: ignore[arg-type]
        except OSError:
            return
        dst.packets_out += 1
        dst.octets_out += n

    def _on_rtcp(self, leg: Leg) -> None:
        try:
            n, addr = leg.rtcp_sock.recvfrom_into(self._rxbuf)
        except OSError:
            return
        try:
            leg.rtcp_last = list(parse_rtcp(bytes(self._rxmv[:n])))
        except ValueError:
            leg.bad_packets += 1
            return
        if leg.rtcp_remote is None or not leg.latched:
            leg.rtcp_remote = addr

    # ---- the ticker --------------------------------------------------------
    def _tick(self) -> None:
        loop = self.loop
        now = loop.time()
        self._tick_no += 1
        due = self._start + self._tick_no * TICK
        self.lateness.append(now - due)
        if now - due > 5 * TICK:  # far behind (suspended, overloaded): skip ahead, timestamps jump
            self._tick_no = int((now - self._start) / TICK)
            due = self._start + self._tick_no * TICK
        self.now = now
        try:
            self._send_all()
            self._process_inbound()
            if self._collectors:
                self._check_collectors(now)
            if self._tick_no % 50 == 0:
                self._check_timeouts(now)
            if self._tick_no % RTCP_EVERY_TICKS == 0:
                self._send_rtcp()
        except Exception:
            log.exception("media tick failed")
        self._handle = loop.call_at(due + TICK, self._tick)

    def _send_all(self) -> None:
        pack = HEADER.pack_into
        tick_no = self._tick_no
        ts_step = FRAME * tick_no
        silence = self._silence
        for leg in list(self._senders.values()):
            out_mv = leg.out_mv
            pt = leg.pt
            if leg.dtmf_out:
                sender, fut = leg.dtmf_out[0]
                step = sender.next_packet()
                if step is None:
                    leg.dtmf_out.popleft()
                    if not fut.done():
                        fut.set_result(None)
                    if not leg.dtmf_out and leg.mode not in (Mode.SILENCE, Mode.PROMPT, Mode.TONE):
                        self._update_sets(leg)
                    continue
                payload, marker, ts_offset, _end = step
                if not payload:
                    continue  # the pause between two events: nothing goes out
                leg.seq = (leg.seq + 1) & 0xFFFF
                ts = (leg.ts_base + FRAME * (tick_no - ts_offset)) & 0xFFFFFFFF
                pkt = bytearray(HEADER.size + len(payload))
                pack(pkt, 0, 0x80, (0x80 if marker else 0) | (leg.te_pt or 101), leg.seq, ts, leg.ssrc)
                pkt[HEADER.size :] = payload
                self._send(leg, pkt)
                continue
            mode = leg.mode
            if mode is _PROMPT:
                i = leg.frame_index
                if i < leg.n_frames:
                    off = i * FRAME
                    out_mv[12:] = leg.frames_mv[off : off + FRAME]  # type: ignore[index]
                    leg.frame_index = i + 1
                else:
                    leg._finish_playback(True)
                    if leg.mode is _PROMPT:  # the done-callback may have started the next prompt
                        leg.mode = Mode.SILENCE
                    out_mv[12:] = silence[leg.codec]
            elif mode is _TONE:
                out_mv[12:] = tone_frame(leg.tone_name or "", leg.frame_index, leg.codec)
                leg.frame_index += 1
            else:
                out_mv[12:] = silence[leg.codec]
            leg.seq = seq = (leg.seq + 1) & 0xFFFF
            if leg.marker:
                leg.marker = False
                pack(out_mv, 0, 0x80, 0x80 | pt, seq, (leg.ts_base + ts_step) & 0xFFFFFFFF, leg.ssrc)
            else:
                pack(out_mv, 0, 0x80, pt, seq, (leg.ts_base + ts_step) & 0xFFFFFFFF, leg.ssrc)
            if leg.recording is not None:
                leg.last_out = out_mv[12:]
            try:
                if leg.connected:
                    leg.rtp_sock.send(out_mv)
                else:
                    leg.rtp_sock.sendto(out_mv, leg.remote)  # type: ignore[arg-type]
            except OSError:
                continue
            leg.packets_out += 1
            leg.octets_out += FRAME

    def _send(self, leg: Leg, pkt: bytearray) -> None:
        try:
            if leg.connected:
                leg.rtp_sock.send(pkt)
            else:
                leg.rtp_sock.sendto(pkt, leg.remote)  # type: ignore[arg-type]
        except OSError:
            return
        leg.packets_out += 1
        leg.octets_out += len(pkt) - HEADER.size

    def _process_inbound(self) -> None:
        """Take one buffered frame per consuming leg: decode, detect DTMF, record."""
        if self._consumers_dirty:
            self._consumer_slots = np.fromiter(self._consumers, dtype=np.int64, count=len(self._consumers))
            self._consumers_dirty = False
        slots = self._consumer_slots
        pcm_rows: dict[int, int] = {}
        pcm = np.zeros((0, FRAME), dtype=np.int16)
        if len(slots):
            rx_w = self._rx_w
            w = np.fromiter((rx_w[s] for s in slots.tolist()), dtype=np.int64, count=len(slots))
            r = np.maximum(self._rx_r[slots], w - RING)  # overrun: drop the oldest
            has = w > r
            idx = slots[has]
            if len(idx):
                rh = r[has]
                frames = self._ring[idx, rh % RING]  # (n, 160) uint8
                r[has] = rh + 1
                codec_ids = self._codec_id[idx]
                if codec_ids.any():  # some PCMA legs: one lookup in the joined µ-law|A-law table
                    pcm = np.take(_DECODE, frames + (codec_ids << 8)[:, None])
                else:
                    pcm = np.take(ULAW_DECODE, frames)
                inband = self._inband[idx]
                if inband.any():
                    for slot, digit in self.detector.process(idx[inband], pcm[inband]):
                        leg = self.legs.get(int(slot))
                        if leg is not None and leg.inband:
                            self._digit(leg, digit, "inband")
                if self._recorders:
                    pcm_rows = {s: i for i, s in enumerate(idx.tolist())}
            self._rx_r[slots] = r
        for leg in self._recorders.values():
            row = pcm_rows.get(leg.slot)
            left = pcm[row] if row is not None else None
            partner = leg.record_partner
            if partner is not None:
                prow = pcm_rows.get(partner.slot)
                right = pcm[prow] if prow is not None else None
            elif leg.last_out is not None:
                right = self._decode_out(leg)
            else:
                right = None
            assert leg.recording is not None
            leg.recording.write(left, right)
            leg.last_out = None

    def _decode_out(self, leg: Leg) -> np.ndarray:
        codes = np.frombuffer(leg.last_out, dtype=np.uint8)  # type: ignore[arg-type]
        table = ULAW_DECODE if leg.codec == "pcmu" else ALAW_DECODE
        return np.asarray(table[codes], dtype=np.int16)

    def _check_collectors(self, now: float) -> None:
        for leg in list(self._collectors):
            c = leg.collector
            if c is None:
                self._collectors.discard(leg)
            elif leg.mode == Mode.PROMPT and not c.digits:
                c.deadline = now + c.first_timeout  # the first-digit timeout runs once the prompt is over
            elif now >= c.deadline:
                leg._end_collect()

    def _check_timeouts(self, now: float) -> None:
        limit = self.rtp_timeout_s
        for leg in list(self.legs.values()):
            if leg.remote is None or leg.timed_out or leg.mode == Mode.IDLE:
                continue
            silent = now - leg.last_rx
            if silent >= limit:
                leg.timed_out = True
                leg._emit(RtpTimeout(leg, silent))

    def _send_rtcp(self) -> None:
        ntp = ntp_from_unix(time.time())
        for leg in list(self.legs.values()):
            if leg.rtcp_remote is None:
                continue
            ts = (leg.ts_base + FRAME * self._tick_no) & 0xFFFFFFFF
            if leg.packets_out:
                data = build_sr(leg.ssrc, ntp, ts, leg.packets_out & 0xFFFFFFFF, leg.octets_out & 0xFFFFFFFF)
            else:
                data = build_rr(leg.ssrc, ())
            with contextlib.suppress(OSError):
                leg.rtcp_sock.sendto(data, leg.rtcp_remote)

    # ---- introspection -----------------------------------------------------
    def stats(self) -> dict[str, Any]:
        lat = np.array(self.lateness) * 1000 if self.lateness else np.zeros(1)
        return {
            "legs": len(self.legs),
            "senders": len(self._senders),
            "packets_in": sum(leg.packets_in for leg in self.legs.values()),
            "packets_out": sum(leg.packets_out for leg in self.legs.values()),
            "tick_lateness_ms_p50": float(np.percentile(lat, 50)),
            "tick_lateness_ms_p99": float(np.percentile(lat, 99)),
            "tick_lateness_ms_max": float(lat.max()),
        }
