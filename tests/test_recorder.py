"""Tests for softswitch.media.recorder: content, pause, crash repair, scale, back-pressure."""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from softswitch.media.recorder import (
    PART_SUFFIX,
    RecorderThread,
    Recording,
    read_flac_stream,
    repair_recordings,
)

RATE = 8000
FRAME = 160
REPO = Path(__file__).resolve().parents[1]


def make_signal(start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Left: 440 Hz sine; right: a 200 -> 3000 Hz chirp repeating every 4 s. Exact for any start."""
    t = np.arange(start, start + n, dtype=np.float64) / RATE
    left = np.round(9000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    tc = t % 4.0
    phase = 2 * np.pi * (200 * tc + (3000 - 200) / 8.0 * tc * tc)
    right = np.round(7000 * np.sin(phase)).astype(np.int16)
    return left, right


def read_all(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="int16", always_2d=True)
    assert rate == RATE
    return np.asarray(data)


@pytest.fixture
def recorder() -> Iterator[RecorderThread]:
    rt = RecorderThread()
    rt.start()
    yield rt
    rt.stop()


def feed(rec: Recording, ticks: int, *, gaps: dict[int, str] | None = None) -> np.ndarray:
    """Write ``ticks`` frames from a reused buffer (as the engine does); returns what the file should hold."""
    gaps = gaps or {}
    buf_l = np.empty(FRAME, np.int16)
    buf_r = np.empty(FRAME, np.int16)
    expected = np.zeros((ticks * FRAME, 2), np.int16)
    for k in range(ticks):
        left, right = make_signal(k * FRAME, FRAME)
        buf_l[:] = left
        buf_r[:] = right
        gap = gaps.get(k, "")
        lf = None if "L" in gap else buf_l
        rf = None if "R" in gap else buf_r
        rec.write(lf, rf)
        if lf is not None:
            expected[k * FRAME : (k + 1) * FRAME, 0] = left
        if rf is not None:
            expected[k * FRAME : (k + 1) * FRAME, 1] = right
        buf_l.fill(12345)  # the engine reuses its buffers: the recorder must have copied
        buf_r.fill(-12345)
    return expected


GAPS = {3: "R", 4: "R", 10: "L", 49: "LR", 50: "R", 51: "L", 120: "LR", 149: "R"}


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_stereo_content_exact(tmp_path: Path, recorder: RecorderThread, fmt: str) -> None:
    path = tmp_path / "a" / "b" / f"call.{fmt}"  # folders are created by the writer
    rec = recorder.open_recording(path, fmt=fmt)  # type: ignore[arg-type]
    expected = feed(rec, 150, gaps=GAPS)
    rec.close()
    assert rec.wait(10)
    assert rec.error is None
    data = read_all(path)
    assert data.shape == (150 * FRAME, 2)
    assert np.array_equal(data, expected)
    # sides are not swapped: the left correlates with the sine, the right with the chirp
    left, right = make_signal(0, 150 * FRAME)
    lf, rf = data[:, 0].astype(float), data[:, 1].astype(float)
    assert np.corrcoef(lf, left)[0, 1] > 0.95 and np.corrcoef(rf, right)[0, 1] > 0.95
    assert abs(np.corrcoef(lf, right)[0, 1]) < 0.1
    assert not (path.with_name(path.name + PART_SUFFIX)).exists()
    assert rec.samples_written == 150 * FRAME


def test_mono_mix(tmp_path: Path, recorder: RecorderThread) -> None:
    rec = recorder.open_recording(tmp_path / "m.wav", stereo=False)
    loud = np.full(FRAME, 30000, np.int16)
    rec.write(loud, loud)  # saturates
    rec.write(np.full(FRAME, 100, np.int16), np.full(FRAME, -30, np.int16))
    rec.write(None, np.full(FRAME, 7, np.int16))
    rec.close()
    assert rec.wait(10)
    data = read_all(tmp_path / "m.wav")
    assert data.shape == (3 * FRAME, 1)
    assert (data[:FRAME] == 32767).all() and (data[FRAME : 2 * FRAME] == 70).all()
    assert (data[2 * FRAME :] == 7).all()


def test_pause_resume_writes_exact_silence(
    tmp_path: Path, recorder: RecorderThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="softswitch.media.recorder")
    rec = recorder.open_recording(tmp_path / "p.wav")
    expected = np.zeros((200 * FRAME, 2), np.int16)
    for k in range(200):
        if k == 60:
            rec.pause(1000.0)
            assert rec.paused
        if k == 110:
            rec.resume(1001.25)
        if k == 170:
            rec.pause(1002.5)
        left, right = make_signal(k * FRAME, FRAME)
        rec.write(left, right)
        if not (60 <= k < 110 or k >= 170):
            expected[k * FRAME : (k + 1) * FRAME] = np.stack([left, right], axis=1)
    rec.close(1003.0)  # ends the open pause
    assert rec.wait(10)
    data = read_all(tmp_path / "p.wav")
    assert np.array_equal(data, expected)
    assert not data[60 * FRAME : 110 * FRAME].any()
    assert data[59 * FRAME : 60 * FRAME].any() and data[110 * FRAME : 111 * FRAME].any()
    assert rec.pauses == [(1.2, 2.2), (3.4, 4.0)]
    intervals = rec.info()["pauses"]
    assert intervals[0] == {"start": 1.2, "end": 2.2, "wall_start": 1000.0, "wall_end": 1001.25}
    assert intervals[1] == {"start": 3.4, "end": 4.0, "wall_start": 1002.5, "wall_end": 1003.0}
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("paused at 1.20" in m for m in messages)
    assert any("resumed at 2.20" in m for m in messages)
    assert any("pause ended by close at 4.00" in m for m in messages)


def test_pause_twice_and_resume_unpaused_are_noops(tmp_path: Path, recorder: RecorderThread) -> None:
    rec = recorder.open_recording(tmp_path / "n.wav")
    rec.resume(1.0)
    rec.pause(2.0)
    rec.pause(3.0)
    assert rec.pauses == [(0.0, None)]
    rec.close()
    assert rec.pauses == [(0.0, 0.0)]
    assert rec.wait(10)


def test_empty_recording(tmp_path: Path, recorder: RecorderThread) -> None:
    wav = recorder.open_recording(tmp_path / "e.wav")
    flac = recorder.open_recording(tmp_path / "e.flac", fmt="flac")
    wav.close()
    flac.close()
    assert wav.wait(10) and flac.wait(10)
    assert wav.error is None and flac.error is None
    assert read_all(tmp_path / "e.wav").shape == (0, 2)
    assert not (tmp_path / "e.flac").exists()  # libsndfile cannot write an empty FLAC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.wav"]


def test_open_error_is_reported_not_raised(tmp_path: Path, recorder: RecorderThread) -> None:
    (tmp_path / "file").write_bytes(b"x")
    rec = recorder.open_recording(tmp_path / "file" / "x.wav")  # parent is a file
    rec.write(np.ones(FRAME, np.int16), None)
    rec.close()
    assert rec.wait(10)
    assert isinstance(rec.error, OSError)
    assert recorder.errors == 1
    with pytest.raises(ValueError):
        recorder.open_recording(tmp_path / "x.mp3", fmt="mp3")  # type: ignore[arg-type]


def test_wall_time_flush_reaches_disk_before_close(tmp_path: Path) -> None:
    rt = RecorderThread(flush_interval=0.05, poll_interval=0.01)
    rt.start()
    try:
        rec = rt.open_recording(tmp_path / "slow.wav")
        for k in range(10):  # 0.2 s of audio: far less than a chunk
            rec.write(*make_signal(k * FRAME, FRAME))
            time.sleep(0.03)
        deadline = time.monotonic() + 5
        while rec.samples_written < 8 * FRAME and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rec.samples_written >= 8 * FRAME  # written while the file is still open
        rec.close()
        assert rec.wait(10)
        assert read_all(tmp_path / "slow.wav").shape == (10 * FRAME, 2)
    finally:
        rt.stop()


_CHILD = r"""
import sys, time
from pathlib import Path
from softswitch.media.recorder import RecorderThread
from tests.test_recorder import make_signal, FRAME
d = Path(sys.argv[1])
rt = RecorderThread()
rt.start()
recs = [rt.open_recording(d / "killed.wav"), rt.open_recording(d / "killed.flac", fmt="flac")]
t0 = time.monotonic()
k = 0
while True:
    left, right = make_signal(k * FRAME, FRAME)
    for r in recs:
        r.write(left, right)
    k += 1
    print(k, flush=True)
    delay = t0 + k * 0.02 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


@pytest.mark.parametrize("kill_at", [160, 195])
def test_sigkill_then_repair(tmp_path: Path, capsys: pytest.CaptureFixture[str], kill_at: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    fed = 0
    try:
        for line in proc.stdout:
            fed = int(line)
            if fed >= kill_at:  # 3.2 s or 3.9 s of audio, fed in real time
                break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    wav, flac = tmp_path / "killed.wav", tmp_path / "killed.flac"
    assert (tmp_path / ("killed.wav" + PART_SUFFIX)).exists()
    assert (tmp_path / ("killed.flac" + PART_SUFFIX)).exists()
    # what libsndfile leaves behind: a WAV header with stale sizes, a FLAC without a sample count
    head = wav.read_bytes()[:44]
    riff_size, data_size = struct.unpack_from("<I", head, 4)[0], struct.unpack_from("<I", head, 40)[0]
    assert riff_size != wav.stat().st_size - 8 and data_size == 0
    with sf.SoundFile(flac) as f:
        assert f.frames > 2**62  # "unknown length": soundfile.read() cannot read it as is
    killed_flac_frames = len(read_flac_stream(flac)[0])

    repaired = repair_recordings(tmp_path)
    assert sorted(repaired) == [flac, wav]
    assert not list(tmp_path.glob("*" + PART_SUFFIX))
    sent = np.stack(make_signal(0, fed * FRAME + 10 * FRAME), axis=1)
    for path in (wav, flac):
        data = read_all(path)
        n = len(data)
        assert n >= fed * FRAME - 2 * RATE, (path, n, fed * FRAME)  # at most 2 s lost
        assert n <= len(sent)
        assert np.array_equal(data, sent[:n]), path
        with capsys.disabled():
            print(
                f"\n[recorder] SIGKILL: {path.suffix} kept {n / RATE:.2f} s of {fed * FRAME / RATE:.2f} s fed"
            )
    assert len(read_all(flac)) == killed_flac_frames
    # a second run finds nothing to do, and the WAV header is now standard
    assert repair_recordings(tmp_path, check_all=True) == []
    head = wav.read_bytes()[:44]
    assert struct.unpack_from("<I", head, 4)[0] == wav.stat().st_size - 8
    assert struct.unpack_from("<I", head, 40)[0] == wav.stat().st_size - 44
    import wave

    with wave.open(str(wav)) as w:  # the stdlib reader trusts the header
        assert w.getnframes() == len(read_all(wav))


def _write_wav(path: Path, frames: int) -> np.ndarray:
    data = np.stack(make_signal(0, frames), axis=1)
    sf.write(path, data, RATE, subtype="PCM_16")
    return data


def test_repair_wav_header_variants(tmp_path: Path) -> None:
    data = _write_wav(tmp_path / "zero.wav", 1000)
    raw = bytearray((tmp_path / "zero.wav").read_bytes())
    raw[4:8] = struct.pack("<I", 36)
    raw[40:44] = struct.pack("<I", 0)
    (tmp_path / "zero.wav").write_bytes(bytes(raw) + b"\x01\x02\x03")  # plus a torn sample frame
    (tmp_path / ("zero.wav" + PART_SUFFIX)).touch()

    (tmp_path / "sub").mkdir()
    _write_wav(tmp_path / "sub" / "stale.wav", 500)
    raw2 = bytearray((tmp_path / "sub" / "stale.wav").read_bytes())
    more = np.stack(make_signal(500, 300), axis=1).tobytes()
    (tmp_path / "sub" / "stale.wav").write_bytes(bytes(raw2) + more)  # sizes say 500 frames, file holds 800

    good = _write_wav(tmp_path / "good.wav", 700)
    (tmp_path / "junk.wav").write_bytes(b"not a wav at all")

    # markers only: the unmarked stale file is not looked at
    assert repair_recordings(tmp_path) == [tmp_path / "zero.wav"]
    assert np.array_equal(read_all(tmp_path / "zero.wav"), data)
    assert (tmp_path / "zero.wav").stat().st_size == 44 + 1000 * 4
    # check_all: header vs length for every WAV; good and junk files are left alone
    assert repair_recordings(tmp_path, check_all=True) == [tmp_path / "sub" / "stale.wav"]
    assert np.array_equal(read_all(tmp_path / "sub" / "stale.wav"), np.stack(make_signal(0, 800), axis=1))
    assert np.array_equal(read_all(tmp_path / "good.wav"), good)
    assert (tmp_path / "junk.wav").read_bytes() == b"not a wav at all"
    assert repair_recordings(tmp_path / "missing") == []


def test_many_recordings_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n_recs, ticks = 500, 250  # 500 recordings x 5 s, as fast as possible
    rt = RecorderThread()
    rt.start()
    try:
        recs = [
            rt.open_recording(
                tmp_path / f"d{i % 10}" / f"r{i}.{'flac' if i % 10 == 0 else 'wav'}",
                fmt="flac" if i % 10 == 0 else "wav",
            )
            for i in range(n_recs)
        ]
        offs = (np.arange(n_recs, dtype=np.int16) * 37)[:, None]
        buf_l = np.empty((n_recs, FRAME), np.int16)  # the engine's reused per-tick buffers
        buf_r = np.empty((n_recs, FRAME), np.int16)
        t0 = time.perf_counter()
        write_time = 0.0
        for k in range(ticks):
            left, right = make_signal(k * FRAME, FRAME)
            np.add(left, offs, out=buf_l)
            np.subtract(right, offs, out=buf_r)
            w0 = time.perf_counter()
            for i, rec in enumerate(recs):
                rec.write(buf_l[i], None if (k + i) % 97 == 0 else buf_r[i])
            write_time += time.perf_counter() - w0
        for rec in recs:
            rec.close()
        for rec in recs:
            assert rec.wait(60), rec
        elapsed = time.perf_counter() - t0
        assert rt.dropped_chunks == 0 and rt.errors == 0
        assert rt.pending_bytes == 0
        left, right = make_signal(0, ticks * FRAME)
        for i, rec in enumerate(recs):
            data = read_all(rec.path)
            assert data.shape == (ticks * FRAME, 2), rec
            assert np.array_equal(data[:, 0], left + np.int16(i * 37)), rec
            exp_r = (right - np.int16(i * 37)).reshape(ticks, FRAME)
            exp_r[[k for k in range(ticks) if (k + i) % 97 == 0]] = 0
            assert np.array_equal(data[:, 1], exp_r.reshape(-1)), rec
        with capsys.disabled():
            print(
                f"\n[recorder] {n_recs} recordings x {ticks * FRAME / RATE:.0f} s: all written in {elapsed:.2f} s; "
                f"write() {write_time / (n_recs * ticks) * 1e6:.2f} us/call; writer batches {rt.batches}"
            )
    finally:
        rt.stop()


def test_writer_behind_drops_with_count_and_keeps_timeline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="softswitch.media.recorder")
    rt = RecorderThread(max_pending_bytes=2 * RATE * 4, stagger=False)  # 2 s of stereo audio
    # the writer is not started yet: it is as far behind as it can be
    rec = rt.open_recording(tmp_path / "behind.wav")
    expected = feed(rec, 250)  # 5 s: 1 s chunks
    assert rt.dropped_chunks == 2 and rt.dropped_seconds == 2.0
    assert rec.dropped_samples == 2 * RATE
    assert any("recorder behind" in r.getMessage() for r in caplog.records)
    rt.start()
    rec.close()
    assert rec.wait(10)
    rt.stop()
    data = read_all(tmp_path / "behind.wav")
    assert data.shape == expected.shape  # the timeline is intact
    # chunks 0-2 fit (pending check happens before each enqueue), 3-4 were dropped, the rest made it
    assert np.array_equal(data[: 3 * RATE], expected[: 3 * RATE])
    assert not data[3 * RATE : 5 * RATE].any()
    assert np.array_equal(data[5 * RATE :], expected[5 * RATE :])
    assert rec.info()["dropped_seconds"] == 2.0


def test_write_enqueue_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Measures write() cost (reported, not asserted); the writer is not running."""
    rt = RecorderThread(max_pending_bytes=1 << 40)
    recs = [rt.open_recording(tmp_path / f"c{i}.wav") for i in range(1000)]
    left, right = make_signal(0, FRAME)
    ticks = 60
    t0 = time.perf_counter()
    for _ in range(ticks):
        for rec in recs:
            rec.write(left, right)
    per_call = (time.perf_counter() - t0) / (ticks * len(recs)) * 1e6
    t0 = time.perf_counter()
    for _ in range(ticks):
        for rec in recs:
            rec.write(left, None)
    per_call_one = (time.perf_counter() - t0) / (ticks * len(recs)) * 1e6
    with capsys.disabled():
        print(
            f"\n[recorder] write(): {per_call:.2f} us/call (both sides), {per_call_one:.2f} us/call (one side)"
        )
    # one chunk per recording per second of audio (after a shorter, staggered first chunk)
    queued = [n for _, _, n in rt._queue]
    assert max(queued) == RATE and min(queued) >= FRAME and len(queued) <= 3 * len(recs)
    assert sum(queued) + sum(rec._pos for rec in recs) == len(recs) * 2 * ticks * FRAME
    firsts: dict[Recording, int] = {}
    for rec, _, n in rt._queue:
        firsts.setdefault(rec, n)
    assert len(set(firsts.values())) == 50  # first chunks spread over the 50 ticks of a second
    rt.start()
    rt.stop()
    assert all(rec.done for rec in recs)
