"""Call recording: one writer thread for every recording, crash-tolerant WAV/FLAC files.

The media engine calls :meth:`Recording.write` once per 20 ms tick per recording with the
frames it has (caller on the left, the other party on the right; ``None`` is silence).
``write`` never touches a file: it copies the frames into a ~1 s block owned by the
recording and, when the block is full (or older than ``flush_interval`` by a coarse clock
the writer keeps), appends a reference to the block to a deque. The single :class:`RecorderThread` drains that deque
in batches and does all file work (folders, open, write, close) with soundfile.

Crash tolerance: blocks reach the kernel at least every ~1 s of audio or of wall time, so
a SIGKILL loses at most about that much (plus one FLAC block of 1152 samples, 0.14 s).
libsndfile writes WAV sizes only on close, and a killed FLAC has no sample count; every
file being written has a ``<name>.part`` marker next to it, and :func:`repair_recordings`
(run at start-up, before recording) fixes WAV headers in place and re-encodes FLACs.

Threading contract: ``open_recording``/``write``/``pause``/``resume``/``close`` are called
from one thread (the event loop); the writer thread owns everything file-related.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf

__all__ = [
    "PauseInterval",
    "RecorderThread",
    "Recording",
    "repair_recordings",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160
PART_SUFFIX = ".part"
_CLOSE = -1
_BYTES_PER_SAMPLE = 4  # stereo int16 in the caller-side blocks
_FLAC_COMPRESSION = (
    0.0  # libFLAC level 0: fastest, blocksize 1152 (so a SIGKILL loses <= 0.14 s in the encoder)
)
_SF_COUNT_MAX = 0x7FFFFFFFFFFFFFFF  # libsndfile's frame count for a FLAC whose STREAMINFO says "unknown"

Format = Literal["wav", "flac"]


@dataclass(slots=True)
class PauseInterval:
    """A pause: ``start``/``end`` in seconds from the recording start, ``wall_*`` as passed in."""

    start: float
    end: float | None
    wall_start: float
    wall_end: float | None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "start": self.start,
            "end": self.end,
            "wall_start": self.wall_start,
            "wall_end": self.wall_end,
        }


class Recording:
    """One file being recorded. Created by :meth:`RecorderThread.open_recording`."""

    __slots__ = (
        "_block",
        "_closed",
        "_deadline",
        "_done",
        "_left",
        "_limit",
        "_paused",
        "_pos",
        "_right",
        "_rt",
        "_samples",
        "_sf",
        "capacity",
        "channels",
        "dropped_samples",
        "error",
        "fmt",
        "path",
        "pause_intervals",
        "samplerate",
        "samples_written",
    )

    def __init__(self, rt: RecorderThread, path: Path, *, stereo: bool, fmt: Format, samplerate: int) -> None:
        self._rt = rt
        self.path = path
        self.fmt: Format = fmt
        self.channels = 2 if stereo else 1
        self.samplerate = samplerate
        self.capacity = rt.chunk_samples
        self._new_block()
        self._pos = 0
        # The first chunk is shortened by a varying amount so that recordings started in the same
        # tick do not all hand their chunks to the writer in the same tick ever after.
        rt._opened += 1
        step = rt._opened * 17 % 50 if rt.stagger else 0
        stagger = step * self.capacity // 50 // FRAME_SAMPLES * FRAME_SAMPLES
        self._limit = max(FRAME_SAMPLES, self.capacity - stagger)
        self._deadline = 0.0
        self._samples = 0
        self._paused = False
        self._closed = False
        self.pause_intervals: list[PauseInterval] = []
        self.dropped_samples = 0  # caller side: audio replaced by silence because the writer fell behind
        # writer-thread state
        self._sf: Any = None
        self._done = threading.Event()
        self.samples_written = 0
        self.error: BaseException | None = None

    def _new_block(self) -> None:
        self._block = np.zeros((self.capacity, 2), np.int16)
        self._left = self._block[:, 0]
        self._right = self._block[:, 1]

    # -- caller (event loop) side -------------------------------------------------------

    def write(self, left: np.ndarray | None, right: np.ndarray | None = None) -> None:
        """Append one frame per side (int16, usually 160 samples); ``None`` means silence.

        Copies the samples (the engine may reuse its buffers); no file I/O.
        """
        if self._closed:
            return
        if left is not None:
            n = len(left)
        elif right is not None:
            n = len(right)
        else:
            n = FRAME_SAMPLES
        pos = self._pos
        if pos + n > self.capacity:
            if n > self.capacity:
                raise ValueError(f"frame of {n} samples exceeds the chunk size {self.capacity}")
            self._flush()
            pos = 0
        if pos == 0:
            self._deadline = self._rt._clock + self._rt.flush_interval
        if not self._paused:
            if left is not None:
                self._left[pos : pos + n] = left
            if right is not None:
                self._right[pos : pos + n] = right
        pos += n
        self._pos = pos
        self._samples += n
        if pos >= self._limit or self._rt._clock >= self._deadline:
            self._flush()

    def _flush(self) -> None:
        pos = self._pos
        if pos == 0:
            return
        self._pos = 0
        rt = self._rt
        if rt._enqueued_bytes - rt.written_bytes > rt.max_pending_bytes:
            # The writer is behind: drop the audio but keep the timeline (the writer writes silence).
            self._block[:pos] = 0
            self.dropped_samples += pos
            rt._drop(self, pos)
            return
        rt._enqueued_bytes += pos * _BYTES_PER_SAMPLE
        rt._queue.append((self, self._block, pos))
        self._new_block()
        self._limit = self.capacity

    def pause(self, now: float) -> None:
        """Write silence from now on (the timeline keeps running); ``now`` is the wall time."""
        if self._paused or self._closed:
            return
        self._paused = True
        start = self._samples / self.samplerate
        self.pause_intervals.append(PauseInterval(start, None, now, None))
        log.info("recording %s paused at %.2f s", self.path, start)

    def resume(self, now: float) -> None:
        """Record audio again after :meth:`pause`."""
        if not self._paused or self._closed:
            return
        self._end_pause(now)
        log.info("recording %s resumed at %.2f s", self.path, self.pause_intervals[-1].end)

    def _end_pause(self, now: float | None) -> None:
        self._paused = False
        p = self.pause_intervals[-1]
        p.end = self._samples / self.samplerate
        p.wall_end = now

    def close(self, now: float | None = None) -> None:
        """Hand the rest to the writer, which closes the file; an open pause ends here.

        A FLAC recording that never received audio leaves no file (libsndfile cannot write
        an empty FLAC); an empty WAV is a valid 44-byte file.
        """
        if self._closed:
            return
        if self._paused:
            self._end_pause(now)
            log.info("recording %s pause ended by close at %.2f s", self.path, self.pause_intervals[-1].end)
        self._flush()
        self._closed = True
        rt = self._rt
        rt._open.discard(self)
        rt._queue.append((self, None, _CLOSE))
        rt._wake.set()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (the file may still be being finished)."""
        return self._closed

    @property
    def duration(self) -> float:
        """Seconds of audio (including silence) handed to this recording so far."""
        return self._samples / self.samplerate

    @property
    def pauses(self) -> list[tuple[float, float | None]]:
        """Pause intervals as (start, end) seconds from the recording start; end is None while paused."""
        return [(p.start, p.end) for p in self.pause_intervals]

    def info(self) -> dict[str, Any]:
        """Facts for the call layer's sidecar JSON."""
        return {
            "path": str(self.path),
            "format": self.fmt,
            "channels": self.channels,
            "samplerate": self.samplerate,
            "duration": self.duration,
            "pauses": [p.as_dict() for p in self.pause_intervals],
            "dropped_seconds": self.dropped_samples / self.samplerate,
        }

    # -- results ---------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True when the writer has closed the file (or given up on it, see :attr:`error`)."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the file is closed; for tests and shutdown, never on the event loop."""
        return self._done.wait(timeout)

    def __repr__(self) -> str:
        return f"<Recording {self.path} {self.fmt} {self.duration:.2f}s>"


class RecorderThread:
    """The single writer thread for all recordings.

    ``chunk_seconds``: audio accumulated per recording before it is queued (and the size of
    the file writes); a recording's first chunk is shorter by a varying amount (``stagger``)
    so that recordings started together spread their chunks over the ticks.
    ``flush_interval``: a partial chunk is queued once it is this old in wall time (checked
    at the next ``write`` against a coarse clock the writer updates every ``poll_interval``).
    ``max_pending_bytes``: when the queued, unwritten audio exceeds this, new chunks are
    dropped (replaced by silence in the file, so the timeline stays true), counted in
    :attr:`dropped_chunks` / :attr:`dropped_seconds` and warned about (at most every 10 s).
    ``fsync_on_close``: fsync each finished file (off: one slow fsync would hold up every
    recording behind the single writer).
    Memory: each open recording holds one chunk (32 KB per second of chunk), plus the queue.
    """

    def __init__(
        self,
        *,
        chunk_seconds: float = 1.0,
        flush_interval: float = 1.0,
        max_pending_bytes: int = 256 * 1024 * 1024,
        poll_interval: float = 0.05,
        samplerate: int = SAMPLE_RATE,
        fsync_on_close: bool = False,
        stagger: bool = True,
    ) -> None:
        self.samplerate = samplerate
        self.fsync_on_close = fsync_on_close
        self.chunk_samples = max(FRAME_SAMPLES, round(chunk_seconds * samplerate))
        self.flush_interval = flush_interval
        self.max_pending_bytes = max_pending_bytes
        self.poll_interval = poll_interval
        self._queue: deque[tuple[Recording, np.ndarray | None, int]] = deque()
        self._open: set[Recording] = set()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Coarse monotonic clock kept by the writer (every poll): write() compares it with the
        # chunk's deadline instead of reading the clock itself.
        self._clock = time.monotonic()
        self._opened = 0
        self.stagger = stagger
        # counters: _enqueued_bytes/dropped_* are written by the caller only, the rest by the writer only
        self._enqueued_bytes = 0
        self.written_bytes = 0
        self.dropped_chunks = 0
        self.dropped_samples = 0
        self._last_drop_warning = 0.0
        self._drops_since_warning = 0
        self.files_opened = 0
        self.files_closed = 0
        self.errors = 0
        self.batches = 0
        self._zeros = np.zeros((self.chunk_samples, 2), np.int16)
        self._busy = False

    # -- caller side -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("recorder already started")
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Close every open recording, write everything queued, and end the thread."""
        for rec in list(self._open):
            rec.close()
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def open_recording(
        self,
        path: str | os.PathLike[str],
        *,
        stereo: bool = True,
        fmt: Format = "wav",
    ) -> Recording:
        """Start a recording; the writer creates folders and the file when the first chunk arrives."""
        if fmt not in ("wav", "flac"):
            raise ValueError(f"unsupported recording format {fmt!r}")
        rec = Recording(self, Path(path), stereo=stereo, fmt=fmt, samplerate=self.samplerate)
        self._open.add(rec)
        return rec

    @property
    def pending_bytes(self) -> int:
        """Audio queued but not yet written."""
        return self._enqueued_bytes - self.written_bytes

    @property
    def dropped_seconds(self) -> float:
        return self.dropped_samples / self.samplerate

    @property
    def open_recordings(self) -> int:
        return len(self._open)

    def stats(self) -> dict[str, float | int]:
        return {
            "open": len(self._open),
            "queued_items": len(self._queue),
            "pending_bytes": self.pending_bytes,
            "written_bytes": self.written_bytes,
            "dropped_chunks": self.dropped_chunks,
            "dropped_seconds": self.dropped_seconds,
            "files_opened": self.files_opened,
            "files_closed": self.files_closed,
            "errors": self.errors,
            "batches": self.batches,
        }

    def flush_all(self) -> None:
        """Queue every open recording's partial chunk now (e.g. before a planned shutdown)."""
        for rec in self._open:
            rec._flush()
        self._wake.set()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self._queue or self._busy:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _drop(self, rec: Recording, samples: int) -> None:
        self.dropped_chunks += 1
        self.dropped_samples += samples
        self._drops_since_warning += 1
        self._queue.append((rec, None, samples))  # keeps the file's timeline: silence
        now = time.monotonic()
        if now - self._last_drop_warning >= 10.0:
            log.warning(
                "recorder behind (%d bytes pending > %d): dropped %d chunks since last warning, %.1f s in total",
                self.pending_bytes,
                self.max_pending_bytes,
                self._drops_since_warning,
                self.dropped_seconds,
            )
            self._last_drop_warning = now
            self._drops_since_warning = 0

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        while True:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            self._clock = time.monotonic()
            if q:
                self._busy = True
                self.batches += 1
                n = 0
                while q:
                    self._handle(*q.popleft())
                    n += 1
                    if n & 255 == 0:
                        self._clock = time.monotonic()
                self._busy = False
            if self._stopping and not q:
                break

    def _handle(self, rec: Recording, block: np.ndarray | None, n: int) -> None:
        if n == _CLOSE:
            self._finish(rec)
            return
        if block is not None:
            self.written_bytes += n * _BYTES_PER_SAMPLE
        if rec.error is not None or rec._done.is_set():
            return
        try:
            f = rec._sf
            if f is None:
                f = self._open_file(rec)
            if block is None:  # dropped chunk: silence
                while n > 0:
                    k = min(n, len(self._zeros))
                    self._write(rec, f, self._zeros[:k])
                    n -= k
            else:
                self._write(rec, f, block[:n])
        except Exception as exc:
            self._fail(rec, exc)

    def _write(self, rec: Recording, f: Any, data: np.ndarray) -> None:
        if rec.channels == 1:
            mixed = data.sum(axis=1, dtype=np.int32)
            np.clip(mixed, -32768, 32767, out=mixed)
            data = mixed.astype(np.int16)
        f.buffer_write(data, dtype="int16")
        rec.samples_written += len(data)

    def _open_file(self, rec: Recording) -> Any:
        path = rec.path
        path.parent.mkdir(parents=True, exist_ok=True)
        _marker(path).touch()
        kwargs: dict[str, Any] = {}
        if rec.fmt == "flac":
            kwargs["compression_level"] = _FLAC_COMPRESSION
        f = sf.SoundFile(
            path,
            "w",
            samplerate=rec.samplerate,
            channels=rec.channels,
            subtype="PCM_16",
            format=rec.fmt.upper(),
            **kwargs,
        )
        rec._sf = f
        self.files_opened += 1
        return f

    def _finish(self, rec: Recording) -> None:
        try:
            if rec.error is None:
                if rec._sf is None:  # nothing was ever written: still leave a valid (empty) file
                    self._open_file(rec)
                _close(rec._sf, self.fsync_on_close)
                rec._sf = None
                if rec.fmt == "flac" and rec.samples_written == 0:
                    # libsndfile writes a FLAC header only with the first samples: 0 bytes is no FLAC
                    rec.path.unlink(missing_ok=True)
                _marker(rec.path).unlink(missing_ok=True)
                self.files_closed += 1
        except Exception as exc:
            self._fail(rec, exc)
        finally:
            rec._done.set()

    def _fail(self, rec: Recording, exc: BaseException) -> None:
        self.errors += 1
        rec.error = exc
        log.error("recording %s failed: %s", rec.path, exc)
        if rec._sf is not None:
            with contextlib.suppress(Exception):
                rec._sf.close()
            rec._sf = None


def _close(f: Any, fsync: bool) -> None:
    """Close a SoundFile; soundfile's close() always fsyncs, which would stall the one writer
    thread behind the disk for every call that ends, so by default libsndfile's close is called
    directly (the data is in the page cache: safe against a process crash, not a power cut)."""
    if fsync:
        f.close()
        return
    handle, f._file = f._file, None
    err = sf._snd.sf_close(handle)
    if err:
        raise RuntimeError(f"sf_close failed: {sf._ffi.string(sf._snd.sf_error_number(err)).decode()}")


# -- repair at start-up -----------------------------------------------------------------------


def _marker(path: Path) -> Path:
    return path.with_name(path.name + PART_SUFFIX)


def repair_recordings(folder: str | os.PathLike[str], *, check_all: bool = False) -> list[Path]:
    """Make recordings cut short by a crash readable; returns the files that were changed.

    Looks for ``<name>.part`` markers under ``folder`` (recursively): WAV headers get their
    RIFF and data sizes from the file length (a partly written sample frame at the end is
    cut off); FLACs without a sample count are decoded as far as possible and re-encoded.
    With ``check_all`` every ``*.wav``/``*.flac`` is checked too (the WAV check reads only
    the header). Run it before the recorder starts, never on files being written.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    candidates: dict[Path, bool] = {}
    for marker in root.rglob("*" + PART_SUFFIX):
        candidates[marker.with_name(marker.name[: -len(PART_SUFFIX)])] = True
    if check_all:
        for pattern in ("*.wav", "*.flac"):
            for p in root.rglob(pattern):
                candidates.setdefault(p, False)
    repaired: list[Path] = []
    for path in sorted(candidates):
        marked = candidates[path]
        suffix = path.suffix.lower()
        try:
            if not path.exists():
                changed = False
            elif marked and path.stat().st_size == 0:
                log.warning("removing empty recording %s (killed before any audio was written)", path)
                path.unlink()
                changed = False
            elif suffix == ".wav":
                changed = repair_wav(path)
            elif suffix == ".flac":
                changed = repair_flac(path)
            else:
                changed = False
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("cannot repair recording %s: %s", path, exc)
            continue
        if changed:
            log.info("repaired recording %s", path)
            repaired.append(path)
        if marked:
            _marker(path).unlink(missing_ok=True)
    return repaired


_RIFF = struct.Struct("<4sI4s")
_CHUNK = struct.Struct("<4sI")


def _wav_layout(head: bytes) -> tuple[int, int, int, int]:
    """(riff size, data offset, data size, block align) from the first bytes of a WAV."""
    if len(head) < 12:
        raise ValueError("too short for a WAV header")
    riff, riff_size, wave = _RIFF.unpack_from(head)
    if riff != b"RIFF" or wave != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos = 12
    align = 0
    while pos + 8 <= len(head):
        cid, size = _CHUNK.unpack_from(head, pos)
        if cid == b"fmt " and pos + 8 + 14 <= len(head):
            align = struct.unpack_from("<H", head, pos + 8 + 12)[0]
        elif cid == b"data":
            if not align:
                raise ValueError("data chunk before fmt chunk")
            return riff_size, pos + 8, size, align
        pos += 8 + size + (size & 1)
    raise ValueError("no data chunk in the header")


def repair_wav(path: Path) -> bool:
    """Fix the RIFF and data sizes of a WAV whose header disagrees with its length."""
    with open(path, "r+b") as f:
        head = f.read(4096)
        riff_size, data_offset, data_size, align = _wav_layout(head)
        length = os.fstat(f.fileno()).st_size
        if length < data_offset:
            raise ValueError("header incomplete")
        if riff_size == length - 8 and data_offset + data_size <= length:
            return False  # consistent (trailing chunks after data are allowed)
        data_size = (length - data_offset) // align * align
        data_size = min(data_size, (0xFFFFFFFF - data_offset) // align * align)
        end = data_offset + data_size
        if end != length:
            f.truncate(end)
        f.seek(4)
        f.write(struct.pack("<I", end - 8))
        f.seek(data_offset - 4)
        f.write(struct.pack("<I", data_size))
    return True


def read_flac_stream(path: Path) -> tuple[np.ndarray, int]:
    """Decode a FLAC as far as it goes (also one with an unknown length); returns (int16 frames, rate)."""
    with sf.SoundFile(path) as f:
        channels, rate = f.channels, f.samplerate
        step = 65536
        buf = np.empty((step, channels), np.int16)
        ptr = sf._ffi.cast("short*", buf.ctypes.data)
        parts: list[np.ndarray] = []
        # soundfile's read() seeks after reading, which fails on a FLAC without a sample count.
        while (got := sf._snd.sf_readf_short(f._file, ptr, step)) > 0:
            parts.append(buf[:got].copy())
    data = np.concatenate(parts) if parts else np.zeros((0, channels), np.int16)
    return data, rate


def repair_flac(path: Path) -> bool:
    """Re-encode a FLAC that a crash left without a sample count (STREAMINFO says unknown)."""
    with sf.SoundFile(path) as f:
        if f.frames != _SF_COUNT_MAX:
            return False
    data, rate = read_flac_stream(path)
    tmp = path.with_name(path.name + ".repair")
    with sf.SoundFile(
        tmp,
        "w",
        samplerate=rate,
        channels=data.shape[1],
        subtype="PCM_16",
        format="FLAC",
        compression_level=_FLAC_COMPRESSION,
    ) as out:
        out.buffer_write(np.ascontiguousarray(data), dtype="int16")
    os.replace(tmp, path)
    return True
