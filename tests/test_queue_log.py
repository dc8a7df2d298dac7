"""ACD queue log: SQLite rows and Asterisk ``queue_log`` lines, batching, flush/close, crash safety."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from softswitch.acd.queue_log import (
    LoggedEntry,
    QueueLog,
    QueueLogError,
    db_path,
    format_line,
    text_path,
)


@dataclass(frozen=True, slots=True)
class Entry:  # the shape of softswitch.acd.core.QueueLogEntry
    time: float
    call_id: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]


T = 1_714_527_000.0

ENTRIES = [
    Entry(T + 0.75, "c1", "a_shares", "NONE", "ENTERQUEUE", ("", "13800000000")),
    Entry(T + 5.2, "c1", "a_shares", "2001", "RINGNOANSWER", ("15000",)),
    Entry(T + 21.999, "c1", "a_shares", "2002", "CONNECT", ("21", "c1-b", "3")),
    Entry(T + 81.0, "c1", "a_shares", "2002", "COMPLETECALLER", ("21", "60", "1")),
    Entry(T + 90.0, "NONE", "NONE", "2003", "AGENTLOGIN", ("2003",)),
    Entry(T + 95.0, "c2", "hk_stocks", "2002", "TRANSFER", ("3000", "", "4", "50", "2")),
    Entry(T + 96.0, "NONE", "NONE", "NONE", "QUEUESTART", ()),
    Entry(T + 97.0, "NONE", "NONE", "2003", "PAUSE", ("",)),
]

LINES = [
    "1714527000|c1|a_shares|NONE|ENTERQUEUE||13800000000",
    "1714527005|c1|a_shares|2001|RINGNOANSWER|15000",
    "1714527021|c1|a_shares|2002|CONNECT|21|c1-b|3",
    "1714527081|c1|a_shares|2002|COMPLETECALLER|21|60|1",
    "1714527090|NONE|NONE|2003|AGENTLOGIN|2003",
    "1714527095|c2|hk_stocks|2002|TRANSFER|3000||4|50|2",
    "1714527096|NONE|NONE|NONE|QUEUESTART|",
    "1714527097|NONE|NONE|2003|PAUSE|",
]


def rows(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT time, call_id, queue, agent, event, data1, data2, data3, data4, data5 FROM queue_log ORDER BY id"
        ).fetchall()
    finally:
        db.close()


def test_round_trip_sqlite_rows_and_text_lines(tmp_path: Path) -> None:
    with QueueLog(tmp_path) as qlog:
        qlog.write(ENTRIES)
    assert rows(db_path(tmp_path)) == [
        (T + 0.75, "c1", "a_shares", "NONE", "ENTERQUEUE", "", "13800000000", None, None, None),
        (T + 5.2, "c1", "a_shares", "2001", "RINGNOANSWER", "15000", None, None, None, None),
        (T + 21.999, "c1", "a_shares", "2002", "CONNECT", "21", "c1-b", "3", None, None),
        (T + 81.0, "c1", "a_shares", "2002", "COMPLETECALLER", "21", "60", "1", None, None),
        (T + 90.0, "NONE", "NONE", "2003", "AGENTLOGIN", "2003", None, None, None, None),
        (T + 95.0, "c2", "hk_stocks", "2002", "TRANSFER", "3000", "", "4", "50", "2"),
        (T + 96.0, "NONE", "NONE", "NONE", "QUEUESTART", None, None, None, None, None),
        (T + 97.0, "NONE", "NONE", "2003", "PAUSE", "", None, None, None, None),
    ]
    text = text_path(tmp_path).read_text(encoding="utf-8")
    assert text == "".join(line + "\n" for line in LINES)
    assert [format_line(e) for e in ENTRIES] == LINES
    with QueueLog(tmp_path) as qlog:  # reading back gives the same entries, data arity included
        back = qlog.entries()
    assert back == [LoggedEntry(e.time, e.call_id, e.queue, e.agent, e.event, e.data) for e in ENTRIES]


def test_db_schema_indexes_and_wal(tmp_path: Path) -> None:
    QueueLog(tmp_path).close()
    db = sqlite3.connect(db_path(tmp_path))
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    sqls = [r[0] for r in db.execute("SELECT sql FROM sqlite_master WHERE type = 'index'")]
    assert any("(time)" in s for s in sqls) and any("(queue, time)" in s for s in sqls)
    cols = [r[1] for r in db.execute("PRAGMA table_info(queue_log)")]
    assert cols == [
        "id",
        "time",
        "call_id",
        "queue",
        "agent",
        "event",
        "data1",
        "data2",
        "data3",
        "data4",
        "data5",
    ]
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(QueueLogError, match="newer"):
        QueueLog(tmp_path)


def test_more_than_five_data_fields_go_into_data5(tmp_path: Path) -> None:
    e = Entry(T, "c9", "q", "NONE", "CUSTOM", ("a", "b", "c", "d", "e", "f", "g"))
    with QueueLog(tmp_path) as qlog:
        qlog.write([e])
        qlog.flush()
        assert rows(db_path(tmp_path))[0][5:] == ("a", "b", "c", "d", "e|f|g")
        assert qlog.entries()[0].data == e.data
    assert text_path(tmp_path).read_text() == "1714527000|c9|q|NONE|CUSTOM|a|b|c|d|e|f|g\n"


def test_pipes_and_newlines_cannot_break_the_text_format(tmp_path: Path) -> None:
    e = Entry(T, "c|1", "q", "NONE", "ENTERQUEUE", ("", 'Evil|"Caller"\r\nX'))
    with QueueLog(tmp_path) as qlog:
        qlog.write([e])
        qlog.flush()
        assert qlog.entries()[0].call_id == "c|1"  # SQLite keeps the value as given
    assert text_path(tmp_path).read_text() == '1714527000|c 1|q|NONE|ENTERQUEUE||Evil "Caller"  X\n'


def test_time_is_truncated_like_asterisk_time_null() -> None:
    assert format_line(Entry(T + 0.999, "c", "q", "a", "E", ("1",))) == "1714527000|c|q|a|E|1"


def test_write_buffers_until_flush(tmp_path: Path) -> None:
    qlog = QueueLog(tmp_path)
    qlog.write(ENTRIES[:3])
    qlog.write(iter(ENTRIES[3:5]))  # any iterable
    assert qlog.pending == 5
    assert rows(db_path(tmp_path)) == []  # another connection sees nothing yet
    assert not text_path(tmp_path).exists()
    assert qlog.flush() == 5
    assert qlog.pending == 0
    assert len(rows(db_path(tmp_path))) == 5
    assert len(text_path(tmp_path).read_text().splitlines()) == 5
    assert qlog.flush() == 0  # nothing pending: no empty transaction, no write
    qlog.write(ENTRIES[5:])
    qlog.close()  # close flushes
    assert len(rows(db_path(tmp_path))) == len(ENTRIES)
    assert text_path(tmp_path).read_text().splitlines() == LINES


def test_write_flushes_by_itself_past_max_pending(tmp_path: Path) -> None:
    with QueueLog(tmp_path, max_pending=3) as qlog:
        qlog.write(ENTRIES[:3])
        assert qlog.pending == 3
        qlog.write(ENTRIES[3:4])
        assert qlog.pending == 0
        assert len(rows(db_path(tmp_path))) == 4


def test_text_file_can_be_rotated_and_disabled(tmp_path: Path) -> None:
    with QueueLog(tmp_path) as qlog:
        qlog.write(ENTRIES[:2])
        qlog.flush()
        text_path(tmp_path).rename(tmp_path / "queue_log.1")  # logrotate
        qlog.write(ENTRIES[2:3])
    assert (tmp_path / "queue_log.1").read_text().splitlines() == LINES[:2]
    assert text_path(tmp_path).read_text().splitlines() == LINES[2:3]
    other = tmp_path / "sqlite-only"
    with QueueLog(other, text_file=False) as qlog:
        qlog.write(ENTRIES)
    assert len(rows(db_path(other))) == len(ENTRIES)
    assert not text_path(other).exists()


def test_text_file_failure_is_raised_after_the_commit(tmp_path: Path) -> None:
    text_path(tmp_path).mkdir()  # cannot be opened as a file
    qlog = QueueLog(tmp_path)
    qlog.write(ENTRIES[:2])
    with pytest.raises(OSError):
        qlog.flush()
    assert len(rows(db_path(tmp_path))) == 2  # SQLite has them, and they are not written twice
    assert qlog.pending == 0
    qlog._db.close()


def test_failed_commit_keeps_the_batch(tmp_path: Path) -> None:
    qlog = QueueLog(tmp_path, text_file=False)
    qlog.write(ENTRIES[:2])
    blocker = sqlite3.connect(db_path(tmp_path), timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # hold the write lock
    qlog._db.execute("PRAGMA busy_timeout=0")
    with pytest.raises(sqlite3.OperationalError):
        qlog.flush()
    assert qlog.pending == 2
    blocker.rollback()
    blocker.close()
    qlog.write(ENTRIES[2:3])
    assert qlog.flush() == 3
    assert [r[4] for r in rows(db_path(tmp_path))] == ["ENTERQUEUE", "RINGNOANSWER", "CONNECT"]
    qlog.close()


def test_entries_filters_and_order(tmp_path: Path) -> None:
    with QueueLog(tmp_path) as qlog:
        qlog.write(reversed(ENTRIES))  # stored out of order, read back by time
        got = qlog.entries(T + 5.2, T + 95.0)  # since inclusive, until exclusive; flushes first
        assert [e.event for e in got] == ["RINGNOANSWER", "CONNECT", "COMPLETECALLER", "AGENTLOGIN"]
        assert [e.event for e in qlog.entries(queue="hk_stocks")] == ["TRANSFER"]
        assert [e.event for e in qlog.entries(since=T + 96, queue="NONE")] == ["QUEUESTART", "PAUSE"]
        assert [e.event for e in qlog.call_entries(["c1", "zz"], T + 10, T + 100)] == [
            "CONNECT",
            "COMPLETECALLER",
        ]
        assert qlog.call_entries([], T, T + 100) == []


def test_agent_state_before_returns_the_last_session_and_pause_event(tmp_path: Path) -> None:
    def ag(t: float, agent: str, event: str, *data: str) -> Entry:
        return Entry(t, "NONE", "NONE", agent, event, data)

    with QueueLog(tmp_path) as qlog:
        qlog.write(
            [
                ag(T + 1, "2001", "AGENTLOGIN", "2001"),
                ag(T + 2, "2001", "PAUSE", "lunch"),
                ag(T + 3, "2001", "UNPAUSE", ""),
                ag(T + 4, "2002", "AGENTLOGIN", "2002"),
                ag(T + 5, "2002", "PAUSE", "break"),
                ag(T + 6, "2001", "AGENTLOGOFF", "2001", "5"),
                ag(T + 7, "2001", "AGENTLOGIN", "2001"),
                ag(T + 20, "2002", "AGENTLOGOFF", "2002", "16"),  # after the cut
            ]
        )
        got = qlog.agent_state_before(T + 10)
    assert [(e.agent, e.event, e.time - T) for e in got] == [
        ("2001", "UNPAUSE", 3),
        ("2002", "AGENTLOGIN", 4),
        ("2002", "PAUSE", 5),
        ("2001", "AGENTLOGIN", 7),
    ]


def test_accepts_the_cores_queue_log_entry(tmp_path: Path) -> None:
    core = pytest.importorskip("softswitch.acd.core")
    e = core.QueueLogEntry(T, "c1", "q", "2001", "CONNECT", ("3", "c1", "1"))
    with QueueLog(tmp_path) as qlog:
        qlog.write([e])
    assert text_path(tmp_path).read_text() == "1714527000|c1|q|2001|CONNECT|3|c1|1\n"


def test_flushed_entries_survive_sigkill_unflushed_ones_are_lost(tmp_path: Path) -> None:
    child = textwrap.dedent(
        """
        import os, signal, sys
        from softswitch.acd.queue_log import LoggedEntry, QueueLog
        qlog = QueueLog(sys.argv[1])
        qlog.write([LoggedEntry(1000.0 + i, f"c{i}", "q", "NONE", "ENTERQUEUE", ("", "x")) for i in range(3)])
        qlog.flush()
        qlog.write([LoggedEntry(2000.0, "lost", "q", "NONE", "ENTERQUEUE", ("", "x"))])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert text_path(tmp_path).read_text().splitlines() == [
        f"{1000 + i}|c{i}|q|NONE|ENTERQUEUE||x" for i in range(3)
    ]
    with QueueLog(tmp_path) as qlog:
        assert [e.call_id for e in qlog.entries()] == ["c0", "c1", "c2"]
