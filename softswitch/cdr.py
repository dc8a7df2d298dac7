"""Call detail records: one row per call in SQLite (WAL, ``synchronous=FULL``).

``CdrStore.write()`` commits and fsyncs before it returns, so a record survives a
crash of the switch right after the call ends. An fsync costs milliseconds on
most disks; a caller that ends many calls per event-loop tick can hand them to
``write_many()`` (one transaction, one fsync) instead.

Durations are computed here from the timestamps, never taken from the caller,
and rounded to milliseconds.
"""

from __future__ import annotations

import csv
import dataclasses
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from .db import open_versioned

DB_NAME = "cdr.sqlite"
SCHEMA_VERSION = 1


class Disposition(StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    CANCELLED = "cancelled"
    FAILED = "failed"


class HangupSide(StrEnum):
    CALLER = "caller"
    CALLEE = "callee"
    SYSTEM = "system"


@dataclass(slots=True)
class CallRecord:
    """One call as seen by the B2BUA. Times are epoch seconds.

    ``duration`` (end - start) and ``billable`` (end - answer, 0 when unanswered) are
    filled in by :class:`CdrStore`; values passed in are ignored.
    """

    call_id: str
    caller: str
    callee: str
    route_target: str  # "extension", "queue:a_shares", "ivr:hotline", "trunk:pstn", ...
    start: float  # INVITE received
    answer: float | None
    end: float
    disposition: Disposition
    sip_code: int | None = None  # final code for failed / busy / no-answer
    hangup_side: HangupSide | None = None
    recording_path: str | None = None
    duration: float = 0.0
    billable: float = 0.0


class CdrError(Exception):
    """The database cannot be used (e.g. written by a newer version)."""


def db_path(data_dir: Path | str) -> Path:
    """Where the switch keeps its CDR database under ``data_dir``."""
    return Path(data_dir) / DB_NAME


def finalize(record: CallRecord) -> CallRecord:
    """A copy of ``record`` with validated enums and computed durations; ValueError if inconsistent."""
    disposition = Disposition(record.disposition)
    side = None if record.hangup_side is None else HangupSide(record.hangup_side)
    start, answer, end = float(record.start), record.answer, float(record.end)
    if end < start:
        raise ValueError(f"CDR {record.call_id}: end {end} is before start {start}")
    if disposition is Disposition.ANSWERED:
        if answer is None:
            raise ValueError(f"CDR {record.call_id}: answered call without an answer time")
        answer = float(answer)
        if not start <= answer <= end:
            raise ValueError(f"CDR {record.call_id}: answer {answer} outside [{start}, {end}]")
        billable = round(end - answer, 3)
    elif answer is not None:
        raise ValueError(f"CDR {record.call_id}: {disposition} call with an answer time")
    else:
        billable = 0.0
    return dataclasses.replace(
        record,
        disposition=disposition,
        hangup_side=side,
        start=start,
        answer=answer,
        end=end,
        duration=round(end - start, 3),
        billable=billable,
    )


_COLUMNS = (
    "call_id, caller, callee, route_target, start_at, answer_at, end_at, duration, billable, "
    "disposition, sip_code, hangup_side, recording_path"
)
_INSERT = f"INSERT INTO cdr ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

_SCHEMA_V1 = """
CREATE TABLE cdr (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    route_target TEXT NOT NULL,
    start_at REAL NOT NULL,
    answer_at REAL,
    end_at REAL NOT NULL,
    duration REAL NOT NULL,
    billable REAL NOT NULL,
    disposition TEXT NOT NULL,
    sip_code INTEGER,
    hangup_side TEXT,
    recording_path TEXT
);
CREATE INDEX cdr_start ON cdr (start_at);
CREATE INDEX cdr_call_id ON cdr (call_id);
"""

# MIGRATIONS[n] upgrades a version-n database to n + 1.
MIGRATIONS: dict[int, str] = {}


def _row(r: CallRecord) -> tuple[Any, ...]:
    return (
        r.call_id,
        r.caller,
        r.callee,
        r.route_target,
        r.start,
        r.answer,
        r.end,
        r.duration,
        r.billable,
        r.disposition.value,
        r.sip_code,
        None if r.hangup_side is None else r.hangup_side.value,
        r.recording_path,
    )


def _record(row: tuple[Any, ...]) -> CallRecord:
    (call_id, caller, callee, target, start, answer, end, duration, billable, disp, code, side, rec) = row
    return CallRecord(
        call_id=call_id,
        caller=caller,
        callee=callee,
        route_target=target,
        start=start,
        answer=answer,
        end=end,
        disposition=Disposition(disp),
        sip_code=code,
        hangup_side=None if side is None else HangupSide(side),
        recording_path=rec,
        duration=duration,
        billable=billable,
    )


class CdrStore:
    """CDRs in a SQLite file (WAL). Every ``write``/``write_many`` is durable when it returns."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # FULL: with WAL, NORMAL may lose the last commits on power loss; CDRs are billing data.
        self._db = open_versioned(self.path, _SCHEMA_V1, SCHEMA_VERSION, MIGRATIONS, synchronous="FULL",
                                  what="CDR", error=CdrError)  # fmt: skip

    def write(self, record: CallRecord) -> CallRecord:
        """Store one record (committed and fsynced on return); returns it with computed durations."""
        r = finalize(record)
        self._db.execute(_INSERT, _row(r))  # autocommit: one transaction, one fsync
        return r

    def write_many(self, records: Iterable[CallRecord]) -> list[CallRecord]:
        """Store several records in one transaction (one fsync); all or none are stored."""
        done = [finalize(r) for r in records]
        if not done:
            return done
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(_INSERT, [_row(r) for r in done])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return done

    def query(
        self,
        since: float | None = None,
        until: float | None = None,
        disposition: Disposition | str | None = None,
        limit: int | None = None,
    ) -> list[CallRecord]:
        """Records with ``since <= start < until``, oldest first; with ``limit``, the latest ``limit`` of them."""
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("start_at >= ?")
            params.append(since)
        if until is not None:
            where.append("start_at < ?")
            params.append(until)
        if disposition is not None:
            where.append("disposition = ?")
            params.append(Disposition(disposition).value)
        sql = f"SELECT {_COLUMNS} FROM cdr"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_at DESC, id DESC"
        if limit is not None:
            if limit < 0:
                raise ValueError("limit must be >= 0")
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._db.execute(sql, params).fetchall()
        rows.reverse()
        return [_record(row) for row in rows]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CdrStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- command-line helpers -------------------------------------------------------------------

_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: float | None = None) -> float:
    """Epoch seconds for ``--since``/``--until``: ISO 8601 date or datetime (local time unless it
    carries an offset), ``today``/``yesterday`` (local midnight), or an age like ``30m``, ``1h``,
    ``2d``, ``1w`` before ``now``. ValueError if it is none of these."""
    s = text.strip().lower()
    if now is None:
        now = time.time()
    if m := _RELATIVE.fullmatch(s):
        return now - int(m.group(1)) * _UNIT[m.group(2)]
    if s in ("today", "yesterday"):
        midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight.timestamp() - (86400 if s == "yesterday" else 0)
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"cannot parse {text!r}: expected an ISO 8601 date or datetime, today, yesterday, "
            "or an age like 30m, 1h, 2d"
        ) from None
    return dt.timestamp()  # naive: local time


def iso_utc(t: float | None) -> str:
    """``2024-05-01T01:30:12.345Z``; '' for None."""
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_local(t: float) -> str:
    return datetime.fromtimestamp(t).isoformat(timespec="seconds")


CSV_FIELDS = (
    "call_id", "caller", "callee", "route_target", "start", "answer", "end", "duration", "billable",
    "disposition", "sip_code", "hangup_side", "recording_path",
)  # fmt: skip


def write_csv(records: Iterable[CallRecord], out: IO[str]) -> None:
    """RFC 4180 CSV (CRLF line ends, header row); times ISO 8601 UTC with milliseconds."""
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(CSV_FIELDS)
    for r in records:
        w.writerow(
            (
                r.call_id,
                r.caller,
                r.callee,
                r.route_target,
                iso_utc(r.start),
                iso_utc(r.answer),
                iso_utc(r.end),
                f"{r.duration:.3f}",
                f"{r.billable:.3f}",
                r.disposition.value,
                "" if r.sip_code is None else r.sip_code,
                "" if r.hangup_side is None else r.hangup_side.value,
                r.recording_path or "",
            )
        )


def format_table(records: list[CallRecord]) -> list[str]:
    """Lines of a human-readable table (start in local time), ending with a count."""
    head = (
        "start", "caller", "callee", "target", "disposition", "code", "duration", "billable", "hangup", "recording",
    )  # fmt: skip
    rows = [
        (
            iso_local(r.start),
            r.caller,
            r.callee,
            r.route_target,
            r.disposition.value,
            "" if r.sip_code is None else str(r.sip_code),
            f"{r.duration:.1f}",
            f"{r.billable:.1f}",
            "" if r.hangup_side is None else r.hangup_side.value,
            r.recording_path or "",
        )
        for r in records
    ]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(head)]
    right = {5, 6, 7}  # numbers
    lines = []
    for row in (head, *rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append(f"{len(rows)} calls")
    return lines
