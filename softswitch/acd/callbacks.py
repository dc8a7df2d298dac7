"""Callback requests that keep the caller's place in line, in ``data_dir/callbacks.sqlite``.

A request moves ``waiting`` -> ``calling`` (an attempt: the agent answered and the customer is
being dialled) -> ``done`` | ``waiting`` (a retry is left) | ``failed``. The state change to
``calling`` is a conditional UPDATE, so one request is never dialled twice, and a number has at
most one open request per queue. Requests still ``waiting`` when the switch stops are queued again
at start, oldest first; one caught ``calling`` by a crash counts as an attempt.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    number TEXT NOT NULL,
    call_id TEXT NOT NULL,
    requested_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    last_attempt REAL,
    agent TEXT,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS callbacks_open ON callbacks (state, queue, number);
"""
OPEN = ("waiting", "calling")


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    id: int
    queue: str
    number: str
    call_id: str
    requested_at: float
    state: str
    attempts: int
    max_attempts: int
    last_attempt: float | None
    agent: str | None
    done_at: float | None


_COLUMNS = (
    "id, queue, number, call_id, requested_at, state, attempts, max_attempts, last_attempt, agent, done_at"
)


def db_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / "callbacks.sqlite"


class CallbackStore:
    def __init__(self, data_dir: Path | str) -> None:
        path = db_path(data_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def add(self, queue: str, number: str, call_id: str, now: float, *, max_attempts: int = 1) -> int | None:
        """A new request; None when this number already has an open one in this queue."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute(
                "SELECT 1 FROM callbacks WHERE queue = ? AND number = ? AND state IN ('waiting', 'calling')",
                (queue, number),
            ).fetchone():
                db.execute("ROLLBACK")
                return None
            cur = db.execute(
                "INSERT INTO callbacks (queue, number, call_id, requested_at, state, max_attempts) "
                "VALUES (?, ?, ?, ?, 'waiting', ?)",
                (queue, number, call_id, now, max_attempts),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        assert cur.lastrowid is not None
        return cur.lastrowid

    def start_attempt(self, request_id: int, agent: str, now: float) -> bool:
        """waiting -> calling; False when the request is not waiting (never dial twice)."""
        cur = self._db.execute(
            "UPDATE callbacks SET state = 'calling', attempts = attempts + 1, last_attempt = ?, agent = ? "
            "WHERE id = ? AND state = 'waiting'",
            (now, agent, request_id),
        )
        return cur.rowcount == 1

    def finish(self, request_id: int, connected: bool, now: float) -> str:
        """End an attempt; returns the new state: done, waiting (a retry is left) or failed."""
        if connected:
            state = "done"
        else:
            row = self._db.execute(
                "SELECT attempts, max_attempts FROM callbacks WHERE id = ?", (request_id,)
            ).fetchone()
            state = "waiting" if row is not None and row[0] < row[1] else "failed"
        self._db.execute(
            "UPDATE callbacks SET state = ?, done_at = ? WHERE id = ? AND state = 'calling'",
            (state, now if state != "waiting" else None, request_id),
        )
        return state

    def cancel(self, request_id: int, now: float) -> None:
        self._db.execute(
            "UPDATE callbacks SET state = 'failed', done_at = ? WHERE id = ? AND state IN ('waiting', 'calling')",
            (now, request_id),
        )

    def get(self, request_id: int) -> CallbackRequest | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM callbacks WHERE id = ?", (request_id,)).fetchone()
        return CallbackRequest(*row) if row else None

    def recover(self, now: float) -> list[CallbackRequest]:
        """At start: attempts cut by a stop count as made; the open requests, oldest first."""
        self._db.execute(
            "UPDATE callbacks SET state = CASE WHEN attempts < max_attempts THEN 'waiting' ELSE 'failed' END, "
            "done_at = CASE WHEN attempts < max_attempts THEN NULL ELSE ? END WHERE state = 'calling'",
            (now,),
        )
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM callbacks WHERE state = 'waiting' ORDER BY requested_at, id"
        ).fetchall()
        return [CallbackRequest(*r) for r in rows]

    def close(self) -> None:
        self._db.close()


def list_callbacks(data_dir: Path | str, *, state: str | None = None) -> list[CallbackRequest]:
    """Every request (or those in ``state``), oldest first; read-only."""
    path = db_path(data_dir)
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        sql = f"SELECT {_COLUMNS} FROM callbacks"
        params: tuple[str, ...] = ()
        if state:
            sql += " WHERE state = ?"
            params = (state,)
        return [CallbackRequest(*r) for r in db.execute(sql + " ORDER BY requested_at, id", params)]
    finally:
        db.close()


def format_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else ""
