"""Voicemail: the ``voicemail:BOX`` application and its message store.

The caller hears ``voicemail_after_beep`` and a beep, then speaks until ``#``, hangup or the
length limit. The message is a WAV under ``data_dir/voicemail/BOX/`` with a row in
``data_dir/voicemail.sqlite``; a hangup mid-recording still saves it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .media.tones import tone_pcm

if TYPE_CHECKING:
    from .calls import App, CallSession

log = logging.getLogger("softswitch.voicemail")

DEFAULT_MAX_SECONDS = 120.0
BEEP_SECONDS = 0.2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    box TEXT NOT NULL,
    caller TEXT NOT NULL,
    time REAL NOT NULL,
    duration REAL NOT NULL,
    path TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_box_time ON messages (box, time);
"""


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    box: str
    caller: str
    time: float  # wall clock (epoch seconds) when recording started
    duration: float  # seconds
    path: str


def db_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "voicemail.sqlite"


def box_dir(data_dir: str | Path, box: str) -> Path:
    return Path(data_dir) / "voicemail" / _safe(box)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.@" else "_" for c in text)[:80] or "_"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=5.0)
    db.executescript(_SCHEMA)
    return db


def add_message(db: str | Path, box: str, caller: str, when: float, duration: float, path: str | Path) -> int:
    """Store one message row; returns its id."""
    conn = _connect(Path(db))
    try:
        with conn:
            cur = conn.execute(
                "INSERT INTO messages (box, caller, time, duration, path) VALUES (?, ?, ?, ?, ?)",
                (box, caller, when, duration, str(path)),
            )
        return int(cur.lastrowid or 0)
    finally:
        conn.close()


def list_messages(db: str | Path, box: str | None = None) -> list[Message]:
    """Messages oldest first, optionally of one box; [] when the database does not exist yet."""
    path = Path(db)
    if not path.exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        sql = "SELECT id, box, caller, time, duration, path FROM messages"
        args: tuple[str, ...] = ()
        if box is not None:
            sql += " WHERE box = ?"
            args = (box,)
        rows = conn.execute(sql + " ORDER BY time, id", args).fetchall()
    finally:
        conn.close()
    return [Message(int(r[0]), r[1], r[2], float(r[3]), float(r[4]), r[5]) for r in rows]


def format_messages(messages: list[Message]) -> list[str]:
    """A table for ``softswitch voicemail list``: one line per message, times local."""
    lines = [f"{'id':>5}  {'box':<12} {'time':<19} {'duration':>8}  {'caller':<20} path"]
    for m in messages:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.time))
        lines.append(f"{m.id:>5}  {m.box:<12} {when:<19} {m.duration:>7.1f}s  {m.caller:<20} {m.path}")
    return lines


async def record_message(
    session: CallSession,
    box: str,
    data_dir: str | Path,
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    clock: Callable[[], float] = time.time,
) -> Message | None:
    """Greeting, beep, record until ``#``/hangup/limit, store; ``voicemail_saved`` unless hung up.

    Returns the stored message (None only when the recording could not be started). On hangup
    the ``CancelledError`` propagates after the message is saved.
    """
    session.answer()
    if not await session.play(["voicemail_after_beep"]):
        # a key skipped the greeting: drop it (and any typed ahead) so it does not end the message
        await session.collect(32, terminator="", first_timeout=0, inter_digit_timeout=0)
    await session.play([tone_pcm("beep", BEEP_SECONDS)], barge_in=False)
    when = clock()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    path = box_dir(data_dir, box) / f"{stamp}_{_safe(session.call_id)}.wav"
    try:
        rec = session.record(path)
    except Exception:
        log.exception("voicemail %s: cannot record %s", session.call_id, path)
        await session.play(["system_busy"], barge_in=False)
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    message: Message | None = None
    try:
        while (remaining := deadline - loop.time()) > 0:
            digit = await session.collect(1, terminator="", first_timeout=remaining, inter_digit_timeout=0)
            if digit in ("#", ""):
                break
    finally:
        rec.close()
        duration = rec.duration
        try:
            msg_id = add_message(db_path(data_dir), box, session.caller, when, duration, path)
        except (sqlite3.Error, OSError):
            log.exception("voicemail %s: cannot store message %s", session.call_id, path)
        else:
            message = Message(msg_id, box, session.caller, when, duration, str(path))
            log.info(
                "voicemail %s: box %s message %d from %s, %.1f s: %s",
                session.call_id, box, msg_id, session.caller, duration, path,
            )  # fmt: skip
    await session.play(["voicemail_saved"], barge_in=False)
    return message


def make_voicemail_app(data_dir: str | Path, *, max_seconds: float = DEFAULT_MAX_SECONDS) -> App:
    """The ``voicemail:BOX`` application (box = ``session.name``); hangs up when done."""

    async def voicemail_app(session: CallSession) -> None:
        await run_voicemail(session, session.name, data_dir, max_seconds=max_seconds)

    return voicemail_app


async def run_voicemail(
    session: CallSession, box: str, data_dir: str | Path, *, max_seconds: float = DEFAULT_MAX_SECONDS
) -> None:
    """Record a message for ``box`` and hang up (also the IVR's ``voicemail:BOX`` action)."""
    await record_message(session, box, data_dir, max_seconds=max_seconds)
    session.hangup()
