"""The ACD's queue log: every ``QueueLogEntry`` of the core, in SQLite and in Asterisk's text format.

Two sinks under ``data_dir``:

- ``queue_log.sqlite`` (WAL): table ``queue_log(id, time, call_id, queue, agent, event, data1..data5)``,
  read by ``softswitch report``. Data fields beyond the fifth are joined with ``|`` into ``data5``, as
  Asterisk's realtime queue_log does.
- ``queue_log``: the text file Asterisk writes, one line per entry,
  ``epoch|callid|queue|agent|event|data1|data2|...`` (integer epoch seconds, truncated like Asterisk's
  ``time(NULL)``; the event is always followed by ``|`` even without data), so existing queue
  reporting tools can read it. ``|`` and line breaks inside a field would corrupt that format and
  are replaced by a space in the text file only. The file is opened for each batch, so it can be
  rotated (renamed) at any time without a reload.

Durability: :meth:`QueueLog.write` only buffers (a list append, safe to call from the event loop for
every event); :meth:`QueueLog.flush`, which the service calls from a 0.2 s timer and on shutdown,
writes the batch in one SQLite transaction and one append to the text file. Killing the process
loses at most the entries written since the last flush (so at most ~0.2 s of events); flushed
entries are in the OS page cache and survive a process crash. SQLite runs with
``synchronous=NORMAL``: an OS crash or power loss may also lose the last commits since the WAL was
last synced (statistics, not billing data: no fsync on the event loop). Pass
``synchronous="FULL"`` for an fsync per flush.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..db import open_versioned

DB_NAME = "queue_log.sqlite"
TEXT_NAME = "queue_log"
SCHEMA_VERSION = 1
DATA_FIELDS = 5

AGENT_SESSION_EVENTS = ("AGENTLOGIN", "AGENTLOGOFF")
AGENT_PAUSE_EVENTS = ("PAUSE", "UNPAUSE")

log = logging.getLogger(__name__)


class QueueLogEvent(Protocol):
    """What :meth:`QueueLog.write` accepts: ``softswitch.acd.core.QueueLogEntry`` or any look-alike."""

    @property
    def time(self) -> float: ...
    @property
    def call_id(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def agent(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def data(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class LoggedEntry:
    """One stored queue log line, as read back (same fields as the core's ``QueueLogEntry``)."""

    time: float
    call_id: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...] = ()


class QueueLogError(Exception):
    """The database cannot be used (e.g. written by a newer version)."""


def db_path(data_dir: Path | str) -> Path:
    """Where the switch keeps the SQLite queue log under ``data_dir``."""
    return Path(data_dir) / DB_NAME


def text_path(data_dir: Path | str) -> Path:
    """Where the switch appends the Asterisk-format ``queue_log`` under ``data_dir``."""
    return Path(data_dir) / TEXT_NAME


_UNSAFE = str.maketrans({"|": " ", "\n": " ", "\r": " "})


def _clean(field: str) -> str:
    return field.translate(_UNSAFE) if ("|" in field or "\n" in field or "\r" in field) else field


def format_line(entry: QueueLogEvent) -> str:
    """The Asterisk ``queue_log`` line for ``entry``, without the newline."""
    head = f"{int(entry.time)}|{_clean(entry.call_id)}|{_clean(entry.queue)}|{_clean(entry.agent)}|{_clean(entry.event)}|"
    return head + "|".join(_clean(d) for d in entry.data)


def _row(e: QueueLogEvent) -> tuple[Any, ...]:
    data: Sequence[str | None] = e.data
    if len(e.data) > DATA_FIELDS:
        data = (*e.data[: DATA_FIELDS - 1], "|".join(e.data[DATA_FIELDS - 1 :]))
    elif len(e.data) < DATA_FIELDS:
        data = (*e.data, *(None,) * (DATA_FIELDS - len(e.data)))  # NULL = absent, "" = present but empty
    return (float(e.time), e.call_id, e.queue, e.agent, e.event, *data)


def _entry(row: tuple[Any, ...]) -> LoggedEntry:
    t, call_id, queue, agent, event, *data = row
    fields = [d for d in data if d is not None]
    if len(fields) == DATA_FIELDS:
        fields[-1:] = fields[-1].split("|")
    return LoggedEntry(t, call_id, queue, agent, event, tuple(fields))


_COLUMNS = "time, call_id, queue, agent, event, data1, data2, data3, data4, data5"
_INSERT = f"INSERT INTO queue_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

_SCHEMA_V1 = """
CREATE TABLE queue_log (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    call_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    agent TEXT NOT NULL,
    event TEXT NOT NULL,
    data1 TEXT,
    data2 TEXT,
    data3 TEXT,
    data4 TEXT,
    data5 TEXT
);
CREATE INDEX queue_log_time ON queue_log (time);
CREATE INDEX queue_log_queue_time ON queue_log (queue, time);
CREATE INDEX queue_log_event_time ON queue_log (event, time)
"""
# queue_log_event_time: the report finds each agent's last login/pause before a day without a
# scan of the whole history.

# MIGRATIONS[n] upgrades a version-n database to n + 1.
MIGRATIONS: dict[int, str] = {}


class QueueLog:
    """Buffered writer and reader of the queue log under ``data_dir`` (see the module docstring)."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        text_file: bool = True,
        synchronous: str = "NORMAL",
        max_pending: int = 10_000,
    ) -> None:
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = db_path(data_dir)
        self.text_path: Path | None = text_path(data_dir) if text_file else None
        self.max_pending = max_pending
        self._pending: list[QueueLogEvent] = []
        if synchronous.upper() not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self._db = open_versioned(self.path, _SCHEMA_V1, SCHEMA_VERSION, MIGRATIONS,
                                  synchronous=synchronous.upper(), what="queue log", error=QueueLogError)  # fmt: skip

    # --- writing ---------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Entries buffered and not yet flushed."""
        return len(self._pending)

    def write(self, entries: Iterable[QueueLogEvent]) -> None:
        """Buffer ``entries`` (cheap); they are stored by the next :meth:`flush`. Flushes by itself
        only when more than ``max_pending`` entries are waiting (a caller that forgot the timer)."""
        self._pending.extend(entries)
        if len(self._pending) > self.max_pending:
            self.flush()

    def flush(self) -> int:
        """Store the buffered entries: one SQLite transaction, then one append to the text file.

        Returns how many were stored. If SQLite fails the entries stay buffered for the next flush
        and the error is raised; a failure of the text file is logged and raised after the
        database commit (those lines are then only in SQLite)."""
        batch = self._pending
        if not batch:
            return 0
        self._pending = []
        rows = [_row(e) for e in batch]
        db = self._db
        try:
            db.execute("BEGIN")
            try:
                db.executemany(_INSERT, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except BaseException:
            self._pending[:0] = batch
            raise
        if self.text_path is not None:
            text = "".join(format_line(e) + "\n" for e in batch)
            try:
                with open(self.text_path, "a", encoding="utf-8") as f:
                    f.write(text)
            except OSError as e:
                log.error("queue_log: cannot append %d lines to %s: %s", len(batch), self.text_path, e)
                raise
        return len(batch)

    def close(self) -> None:
        """Flush and close (the buffer is flushed even if the text file fails)."""
        try:
            self.flush()
        finally:
            self._db.close()

    def __enter__(self) -> QueueLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------

    def _select(self, where: str, params: Sequence[Any]) -> list[LoggedEntry]:
        sql = f"SELECT {_COLUMNS} FROM queue_log WHERE {where} ORDER BY time, id"
        return [_entry(row) for row in self._db.execute(sql, params)]

    def entries(
        self, since: float | None = None, until: float | None = None, queue: str | None = None
    ) -> list[LoggedEntry]:
        """Stored entries with ``since <= time < until`` (either bound optional), oldest first; only
        ``queue``'s if given. Buffered entries are flushed first."""
        self.flush()
        where = ["1"]
        params: list[Any] = []
        if queue is not None:
            where.append("queue = ?")
            params.append(queue)
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        if until is not None:
            where.append("time < ?")
            params.append(until)
        return self._select(" AND ".join(where), params)

    def agent_state_before(self, t: float) -> list[LoggedEntry]:
        """Per agent, its last AGENTLOGIN/AGENTLOGOFF and its last PAUSE/UNPAUSE before ``t``, oldest
        first: enough to know who was logged in (and paused) at ``t``."""
        self.flush()
        out: list[LoggedEntry] = []
        for events in (AGENT_SESSION_EVENTS, AGENT_PAUSE_EVENTS):
            sql = (
                f"SELECT {_COLUMNS} FROM (SELECT {_COLUMNS}, row_number() OVER "
                f"(PARTITION BY agent ORDER BY time DESC, id DESC) AS rn FROM queue_log "
                f"WHERE event IN (?, ?) AND time < ?) WHERE rn = 1"
            )
            for row in self._db.execute(sql, (*events, t)):
                out.append(_entry(row))
        out.sort(key=lambda e: e.time)
        return out

    def call_entries(self, call_ids: Iterable[str], since: float, until: float) -> list[LoggedEntry]:
        """Entries of these calls with ``since <= time < until``, oldest first (chunked queries)."""
        self.flush()
        ids = sorted(set(call_ids))
        out: list[LoggedEntry] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            out.extend(
                self._select(f"time >= ? AND time < ? AND call_id IN ({marks})", (since, until, *chunk))
            )
        out.sort(key=lambda e: e.time)  # stable: keeps the id order of equal times within a chunk
        return out
