"""Voicemail app with a fake CallSession recording through a real RecorderThread; the CLI list."""

from __future__ import annotations

import asyncio
import sqlite3
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from softswitch.cli import main
from softswitch.ivr import make_ivr_app, parse_menus
from softswitch.media.recorder import RecorderThread, Recording
from softswitch.voicemail import (
    add_message,
    db_path,
    format_messages,
    list_messages,
    make_voicemail_app,
    record_message,
    run_voicemail,
)
from tests.test_ivr import BLOCK, FakeSession

FRAME = np.full(160, 1000, np.int16)


class RecordingSession(FakeSession):
    """FakeSession whose record() opens a real recording; each collect() first 'hears' some audio."""

    def __init__(
        self, rt: RecorderThread, digits: Sequence[object], *, frames_per_collect: int = 50, **kw: Any
    ):
        super().__init__(digits, **kw)
        self.rt = rt
        self.frames_per_collect = frames_per_collect
        self.recording: Recording | None = None

    def record(self, path: str | Path) -> Recording:
        self.answer()
        self.record_paths.append(Path(path))
        self.recording = self.rt.open_recording(path)
        return self.recording

    async def collect(self, max_digits: int, **kw: Any) -> str:
        if self.recording is not None and not self.recording.closed:
            for _ in range(self.frames_per_collect):
                self.recording.write(FRAME)
        return await super().collect(max_digits, **kw)


@pytest.fixture
def rt() -> Iterator[RecorderThread]:
    rt = RecorderThread(flush_interval=0.05, poll_interval=0.01)
    rt.start()
    yield rt
    rt.stop()


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 8000
        return w.getnframes() / w.getframerate()


async def test_message_ends_with_hash(tmp_path: Path, rt: RecorderThread) -> None:
    s = RecordingSession(rt, ["#"], name="a_shares", caller="1001")
    app = make_voicemail_app(tmp_path)
    await app(s)  # type: ignore[arg-type]
    assert s.prompts == ["voicemail_after_beep", "<pcm>", "voicemail_saved"]
    assert s.ended
    [msg] = list_messages(db_path(tmp_path))
    assert (msg.box, msg.caller, msg.id) == ("a_shares", "1001", 1)
    assert msg.duration == pytest.approx(1.0)
    path = Path(msg.path)
    assert path.parent == tmp_path / "voicemail" / "a_shares"
    assert path.suffix == ".wav" and "call-1" in path.name
    assert s.recording is not None and s.recording.wait(5)
    assert wav_seconds(path) == pytest.approx(1.0)


async def test_other_digits_do_not_end_the_message(tmp_path: Path, rt: RecorderThread) -> None:
    s = RecordingSession(rt, ["1", "5", "#"])
    msg = await record_message(s, "box1", tmp_path)  # type: ignore[arg-type]
    assert msg is not None and msg.duration == pytest.approx(3.0)
    assert not s.ended  # record_message leaves the call up; run_voicemail hangs up
    assert all(c["max_digits"] == 1 and c["terminator"] == "" for c in s.collects)


async def test_time_limit(tmp_path: Path, rt: RecorderThread) -> None:
    s = RecordingSession(rt, [BLOCK], frames_per_collect=5)
    msg = await asyncio.wait_for(record_message(s, "box1", tmp_path, max_seconds=0.05), 2)  # type: ignore[arg-type]
    assert msg is not None and msg.duration == pytest.approx(0.1)
    assert s.prompts[-1] == "voicemail_saved"
    assert s.collects[0]["first_timeout"] <= 0.05


async def test_hangup_mid_recording_still_saves(tmp_path: Path, rt: RecorderThread) -> None:
    s = RecordingSession(rt, [BLOCK], frames_per_collect=100, name="b")
    task = asyncio.create_task(make_voicemail_app(tmp_path)(s))  # type: ignore[arg-type]
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "voicemail_saved" not in s.prompts
    [msg] = list_messages(db_path(tmp_path), "b")
    assert msg.duration == pytest.approx(2.0)
    assert s.recording is not None and s.recording.closed and s.recording.wait(5)
    assert wav_seconds(Path(msg.path)) == pytest.approx(2.0)


async def test_key_during_greeting_is_dropped(tmp_path: Path, rt: RecorderThread) -> None:
    class Impatient(RecordingSession):
        async def play(self, prompts: Sequence[Any], *, barge_in: bool = True) -> bool:
            await super().play(prompts, barge_in=barge_in)
            return "voicemail_after_beep" not in [p for p in prompts if isinstance(p, str)]  # "#" pressed

    s = Impatient(rt, ["#", "#"])
    msg = await record_message(s, "box1", tmp_path)  # type: ignore[arg-type]
    assert s.collects[0]["max_digits"] > 1  # the drain, before the recording
    assert msg is not None and msg.duration == pytest.approx(1.0)  # the second "#" ended it


async def test_record_failure_says_busy(tmp_path: Path) -> None:
    class Broken(FakeSession):
        def record(self, path: str | Path) -> Recording:
            raise RuntimeError("recording is not enabled")

    s = Broken([])
    await run_voicemail(s, "box1", tmp_path)  # type: ignore[arg-type]
    assert s.prompts == ["voicemail_after_beep", "<pcm>", "system_busy"]
    assert s.ended
    assert list_messages(db_path(tmp_path)) == []


async def test_ivr_voicemail_key(tmp_path: Path, rt: RecorderThread) -> None:
    menus, problems = parse_menus(
        {"hotline": {"prompt": "welcome", "keys": {"2": "voicemail:sales"}}}, prompt_names={"welcome"}
    )
    assert problems == []

    async def voicemail(session: Any, box: str) -> None:
        await run_voicemail(session, box, tmp_path)

    s = RecordingSession(rt, ["2", "#"])
    await make_ivr_app(menus, {}, voicemail=voicemail)(s)  # type: ignore[arg-type]
    assert s.prompts == ["welcome", "voicemail_after_beep", "<pcm>", "voicemail_saved"]
    assert [m.box for m in list_messages(db_path(tmp_path))] == ["sales"]


def test_list_messages_order_filter_and_missing_db(tmp_path: Path) -> None:
    db = tmp_path / "vm.sqlite"
    assert list_messages(db) == []
    assert not db.exists()
    add_message(db, "b", "1002", 200.0, 3.5, "/x/2.wav")
    add_message(db, "a", "1001", 100.0, 1.0, "/x/1.wav")
    add_message(db, "b", "1003", 50.0, 2.0, "/x/3.wav")
    assert [m.caller for m in list_messages(db)] == ["1003", "1001", "1002"]
    assert [m.caller for m in list_messages(db, "b")] == ["1003", "1002"]
    assert list_messages(db, "zzz") == []
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone() == (3,)
    lines = format_messages(list_messages(db))
    assert len(lines) == 4 and "1002" in lines[3] and "3.5s" in lines[3]


def config(tmp_path: Path) -> Path:
    path = tmp_path / "switch.toml"
    path.write_text('[switch]\ndomain = "a.example"\ndata_dir = "var"\n[accounts.1]\npassword = "p"\n')
    return path


def test_cli_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    assert main(["voicemail", "list", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out == "no messages\n"
    db = db_path(tmp_path / "var")
    add_message(db, "a_shares", "1001", 1_700_000_000.0, 12.25, "var/voicemail/a_shares/1.wav")
    add_message(db, "hk", "1002", 1_700_000_100.0, 3.0, "var/voicemail/hk/2.wav")
    assert main(["voicemail", "list", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["id", "box", "time", "duration", "caller", "path"]
    assert out[1].split()[:2] == ["1", "a_shares"] and "12.2s" in out[1] and out[1].endswith("1.wav")
    assert out[2].split()[:2] == ["2", "hk"]
    assert out[-1] == "2 messages"
    assert main(["voicemail", "list", "-c", str(cfg), "--box", "hk"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[1].split()[1] == "hk"


def test_cli_requires_action(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["voicemail", "-c", str(config(tmp_path))])
