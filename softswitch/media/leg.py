"""A call leg's media state and the operations applications call on it.

:class:`Leg` objects are made by :meth:`MediaEngine.create_leg`; the engine's
ticker and socket readers drive them. Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import socket
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..codecs.telephone_event import EVENTS
from .dtmf import Rfc4733Receiver, Rfc4733Sender
from .recorder import Recording
from .tones import tone_frame

if TYPE_CHECKING:
    from .engine import MediaEngine

log = logging.getLogger("softswitch.media")

FRAME = 160  # samples (and G.711 bytes) per 20 ms
HEADER_SIZE = 12
CODEC_IDS = {"pcmu": 0, "pcma": 1}
STATIC_PT = {"pcmu": 0, "pcma": 8}
SILENCE = {"pcmu": 0xFF, "pcma": 0xD5}


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
        self.out = bytearray(HEADER_SIZE + FRAME)
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
        self.digits_received = 0  # every digit the caller keyed (counted, never logged: PINs)
        self.collector: _Collector | None = None
        self.peer: Leg | None = None
        self.recording: Recording | None = None  # the call recording
        self.app_recording: Recording | None = None  # an application's own (e.g. a voicemail message)
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
        self.relay = bytearray(HEADER_SIZE + 1500)
        self.relay_mv = memoryview(self.relay)
        # shared-port mode (engine.shared): where this leg is filed and where its packets go
        self.addr_key: int | None = None  # mmsg.address_key of ``remote``
        self.sockaddr: bytes | None = None  # ``remote`` as a sockaddr_in, for sendmmsg
        self.awaiting_ip: str | None = None  # filed among the legs waiting for their first packet

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
            if self.engine.shared is not None:
                self.engine.shared.index(self)
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

    def record(
        self, path: str | Path, *, stereo: bool = True, fmt: str | None = None, app: bool = False
    ) -> Recording:
        """Record this leg: its inbound audio left, the other party (bridge peer or what we play) right.

        ``app=True`` opens the application's recording (a voicemail message), which runs
        alongside the call recording instead of replacing it.
        """
        if self.engine.recorder is None:
            raise MediaError("recording is not enabled")
        fmt = fmt or Path(path).suffix.lstrip(".").lower() or "wav"
        if fmt not in ("wav", "flac"):
            raise MediaError(f"unsupported recording format {fmt!r}; expected wav or flac")
        rec = self.engine.recorder.open_recording(
            Path(path), stereo=stereo, fmt="wav" if fmt == "wav" else "flac"
        )
        if app:
            if self.app_recording is not None:
                self.app_recording.close()
            self.app_recording = rec
        else:
            self.recording = rec
        self.record_partner = self.peer
        self.engine._update_sets(self)
        return rec

    def pause_recording(self) -> None:
        if self.recording is not None:
            self.recording.pause(self.engine.now)

    def resume_recording(self) -> None:
        if self.recording is not None:
            self.recording.resume(self.engine.now)

    def stop_recording(self, *, app: bool = False) -> None:
        rec = self.app_recording if app else self.recording
        if rec is not None:
            rec.close()
            if app:
                self.app_recording = None
            else:
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
