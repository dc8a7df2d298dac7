"""The parent side of a leg that lives in a media worker process, and the wire between them.

:class:`RemoteLeg` offers the :class:`~softswitch.media.leg.Leg` API the B2BUA and the
applications use; every operation is one message to the worker (no round trip), and the
futures it returns resolve when the worker reports the result. :class:`Channel` is the
msgpack stream over the Unix socket both sides use: messages are msgpack arrays
``[op, ...]``, batched per event-loop iteration into one ``send``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import msgpack
import numpy as np

from ..codecs.telephone_event import EVENTS
from .leg import CODEC_IDS, STATIC_PT, DigitEvent, Leg, MediaError, MediaEvent, PlaybackDone, RtpTimeout
from .tones import tone_frame

if TYPE_CHECKING:
    from .workers import RemoteMediaEngine, WorkerLink

log = logging.getLogger("softswitch.media.workers")

__all__ = ["Channel", "RemoteLeg", "RemoteRecording", "WorkerDied"]

READ_SIZE = 1 << 18


@dataclass(frozen=True, slots=True)
class WorkerDied(RtpTimeout):
    """The worker process holding the leg died: the leg is gone (a kind of RTP timeout)."""


class Channel:
    """Framed msgpack messages over a non-blocking stream socket, driven by the event loop.

    ``send`` queues; the queue goes out in one ``send`` system call at the end of the
    current loop iteration (the rest when the socket is writable again).
    """

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[list[Any]], None],
        on_close: Callable[[], None],
    ) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.loop = loop
        self.fd = sock.fileno()
        self._on_message = on_message
        self._on_close = on_close
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
        self._pack = msgpack.Packer(use_bin_type=True).pack
        self._out: list[bytes] = []
        self._pending = bytearray()  # what the socket did not take yet
        self._scheduled = False
        self.closed = False
        loop.add_reader(self.fd, self._readable)

    def send(self, msg: Sequence[Any]) -> None:
        if self.closed:
            return
        self._out.append(self._pack(msg))
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self.closed or not self._out:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        if self._pending:  # the writer callback is armed and sends in order
            self._pending += data
            return
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.close()
            return
        if n < len(data):
            self._pending += memoryview(data)[n:]
            self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            n = self.sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self._pending[:n]
        if not self._pending:
            self.loop.remove_writer(self.fd)

    def flush_blocking(self, timeout: float = 2.0) -> None:
        """Send everything queued now (shutdown, when the loop may not run again)."""
        if self.closed:
            return
        data = bytes(self._pending) + b"".join(self._out)
        self._out.clear()
        self._pending.clear()
        self.loop.remove_writer(self.fd)
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(data)
            self.sock.setblocking(False)
        except OSError:
            pass

    def _readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self._unpacker.feed(data)
        for msg in self._unpacker:
            try:
                self._on_message(msg)
            except Exception:
                log.exception("media worker message %r failed", msg[:2] if isinstance(msg, list) else msg)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        self.sock.close()
        self._on_close()


class RemoteRecording:
    """What :meth:`RemoteLeg.record` returns: the parts of a Recording the call layer reads.

    ``pauses`` and ``duration`` are kept here from what the parent asked (so they can be read
    right after ``stop_recording``) and replaced by the worker's exact figures when they come.
    """

    __slots__ = ("_done", "_final_duration", "_leg", "_paused_at", "_t0", "app", "error", "fmt", "path",
                 "pause_list", "rid", "stopped")  # fmt: skip

    def __init__(self, leg: RemoteLeg, rid: int, path: Path, fmt: str, app: bool, now: float) -> None:
        self._leg = leg
        self.rid = rid
        self.path = path
        self.fmt = fmt
        self.app = app
        self._t0 = now
        self._paused_at: float | None = None
        self._final_duration: float | None = None
        self.pause_list: list[tuple[float, float | None]] = []
        self.stopped = False
        self.error: str | None = None
        self._done = threading.Event()

    def _elapsed(self) -> float:
        return max(0.0, self._leg._engine.loop.time() - self._t0)

    @property
    def duration(self) -> float:
        """Seconds recorded (the worker's count once it has reported the close)."""
        if self._final_duration is not None:
            return self._final_duration
        return self._elapsed()

    @property
    def pauses(self) -> list[tuple[float, float | None]]:
        return list(self.pause_list)

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    @property
    def closed(self) -> bool:
        return self.stopped

    @property
    def done(self) -> bool:
        """True once the worker's writer has closed the file (or given up on it: see :attr:`error`)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the file is closed; for tests and shutdown, never on the event loop."""
        return self._done.wait(timeout)

    def close(self, now: float | None = None) -> None:
        leg = self._leg
        if (leg.app_recording if self.app else leg.recording) is self:
            leg.stop_recording(app=self.app)

    # ---- bookkeeping from the leg and the worker ----
    def _pause(self) -> None:
        if self.stopped or self._paused_at is not None:
            return
        self._paused_at = at = self._elapsed()
        self.pause_list.append((at, None))

    def _resume(self) -> None:
        if self.stopped or self._paused_at is None:
            return
        self._paused_at = None
        start, _ = self.pause_list[-1]
        self.pause_list[-1] = (start, self._elapsed())

    def _stop(self) -> None:
        if self.stopped:
            return
        self._resume()
        self.stopped = True

    def _update(self, pauses: list[list[float | None]], duration: float | None) -> None:
        self.pause_list = [(float(p[0] or 0.0), p[1]) for p in pauses]
        if duration is not None:
            self._final_duration = duration

    def _finish(self, error: str | None) -> None:
        self.stopped = True
        self.error = error
        self._done.set()

    def __repr__(self) -> str:
        return f"<RemoteRecording {self.path} {self.fmt} {self.duration:.2f}s>"


def _encode_prompts(prompts: Sequence[str | np.ndarray]) -> list[str | bytes]:
    return [p if isinstance(p, str) else np.asarray(p, dtype="<i2").reshape(-1).tobytes() for p in prompts]


class RemoteLeg:
    """A leg in a media worker: the :class:`Leg` API, each call one message to the worker."""

    def __init__(self, engine: RemoteMediaEngine, worker: WorkerLink, wid: int, key: int, port: int,
                 ssrc: int) -> None:  # fmt: skip
        self._engine = engine
        self._worker = worker
        self.wid = wid  # the leg's id in its worker
        self.slot = key  # the key in engine.legs
        self.port = port
        self.ssrc = ssrc
        self.codec = "pcmu"
        self.pt = 0
        self.te_pt: int | None = 101
        self.remote: tuple[str, int] | None = None
        self.language = engine.language
        self.on_event: Callable[[MediaEvent], None] | None = None
        self.peer: RemoteLeg | None = None
        self.digits_received = 0
        self.recording: RemoteRecording | None = None
        self.app_recording: RemoteRecording | None = None
        self.closed = False
        self.dead = False  # its worker process died

    @property
    def worker(self) -> int:
        """Index of the worker process holding this leg."""
        return self._worker.index

    @property
    def alive(self) -> bool:
        return not self.dead and not self.closed

    def _send(self, msg: list[Any]) -> None:
        if self.dead:
            self._worker.dead_leg_used(self)
        else:
            self._worker.send(msg)

    def _request(self, msg: list[Any]) -> asyncio.Future[Any]:
        if self.dead:
            fut: asyncio.Future[Any] = self._engine.loop.create_future()
            fut.cancel()
            self._worker.dead_leg_used(self)
            return fut
        fut, msg[2] = self._worker.new_request()
        self._worker.send(msg)
        return fut

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
        if telephone_event_pt is not False:
            self.te_pt = telephone_event_pt if isinstance(telephone_event_pt, int) else None
        if remote is not None:
            self.remote = remote
        host, port = remote if remote is not None else (None, None)
        self._send(["cfg", self.wid, codec, payload_type, telephone_event_pt, host, port])

    # ---- operations --------------------------------------------------------
    def play(self, prompts: Sequence[str | np.ndarray], *, barge_in: bool = True) -> asyncio.Future[bool]:
        """Play prompts (names in the leg's language, or int16 PCM); see :meth:`Leg.play`.

        An unknown prompt fails the future with :class:`MediaError` (the worker knows the library).
        """
        return self._request(["play", self.wid, 0, _encode_prompts(prompts), barge_in, self.language])

    def tone(self, name: str) -> None:
        tone_frame(name, 0)  # raises for unknown names, as the engine does
        self._send(["tone", self.wid, name])

    def stop(self) -> None:
        self._send(["stop", self.wid])

    def collect_digits(
        self,
        max_digits: int,
        *,
        terminator: str = "#",
        first_timeout: float = 5.0,
        inter_digit_timeout: float = 3.0,
    ) -> asyncio.Future[str]:
        return self._request(
            ["collect", self.wid, 0, max_digits, terminator, first_timeout, inter_digit_timeout]
        )

    def send_dtmf(self, digits: str, *, duration_ms: int = 100) -> asyncio.Future[None]:
        if self.te_pt is None:
            raise MediaError("telephone-event was not negotiated on this leg")
        for d in digits:
            if d.upper() not in EVENTS:
                raise MediaError(f"not a DTMF digit: {d!r}")
        return self._request(["dtmf", self.wid, 0, digits, duration_ms])

    def feed_digit(self, digit: str, source: str = "info") -> None:
        self._send(["digit", self.wid, digit, source])

    def record(
        self, path: str | Path, *, stereo: bool = True, fmt: str | None = None, app: bool = False
    ) -> RemoteRecording:
        """Record this leg in its worker (see :meth:`Leg.record`)."""
        if self._engine.recorder is None:
            raise MediaError("recording is not enabled")
        fmt = fmt or Path(path).suffix.lstrip(".").lower() or "wav"
        if fmt not in ("wav", "flac"):
            raise MediaError(f"unsupported recording format {fmt!r}; expected wav or flac")
        rid = self._worker.new_recording_id()
        rec = RemoteRecording(self, rid, Path(path), fmt, app, self._engine.loop.time())
        old = self.app_recording if app else self.recording
        if old is not None and app:
            old._stop()  # the worker closes it when the new one opens
        if app:
            self.app_recording = rec
        else:
            self.recording = rec
        self._worker.recordings[rid] = rec
        self._send(["record", self.wid, rid, str(path), stereo, fmt, app])
        return rec

    def pause_recording(self) -> None:
        if self.recording is not None:
            self.recording._pause()
            self._send(["pause", self.wid])

    def resume_recording(self) -> None:
        if self.recording is not None:
            self.recording._resume()
            self._send(["resume", self.wid])

    def stop_recording(self, *, app: bool = False) -> None:
        rec = self.app_recording if app else self.recording
        if rec is None:
            return
        rec._stop()
        if app:
            self.app_recording = None
        else:
            self.recording = None
        self._send(["stoprec", self.wid, app])

    # ---- from the worker ---------------------------------------------------
    def _emit(self, event: MediaEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("media event handler failed")

    def _event(self, kind: str, a: Any, b: Any = None) -> None:
        me = cast(Leg, self)  # the event classes name Leg; a RemoteLeg stands in for it
        if kind == "d":
            self.digits_received += 1
            self._emit(DigitEvent(me, a, b))
        elif kind == "p":
            self._emit(PlaybackDone(me, bool(a)))
        elif kind == "t":
            self._emit(RtpTimeout(me, float(a)))

    def __repr__(self) -> str:
        return f"<RemoteLeg w{self._worker.index}:{self.wid} :{self.port} {self.codec} -> {self.remote}>"
