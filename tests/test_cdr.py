"""CDR store and ``softswitch cdr``: durable writes, computed durations, filters, CSV/table output."""

from __future__ import annotations

import csv
import io
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.cdr import (
    CSV_FIELDS,
    CallRecord,
    CdrError,
    CdrStore,
    Disposition,
    HangupSide,
    db_path,
    finalize,
    parse_when,
)
from softswitch.cli import main

T0 = 1_714_527_000.0  # 2024-05-01T01:30:00Z = 09:30 in Shanghai (UTC+8)


def answered(
    call_id: str = "a1", start: float = T0, answer: float = T0 + 3.25, end: float = T0 + 63.5
) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        caller="1001",
        callee="95555",
        route_target="queue:a_shares",
        start=start,
        answer=answer,
        end=end,
        disposition=Disposition.ANSWERED,
        sip_code=200,
        hangup_side=HangupSide.CALLER,
        recording_path="/var/rec/a1.wav",
    )


def unanswered(
    call_id: str, start: float, disposition: Disposition, code: int | None, end: float | None = None
) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        caller="13800000000",
        callee="2001",
        route_target="extension",
        start=start,
        answer=None,
        end=start + 20 if end is None else end,
        disposition=disposition,
        sip_code=code,
        hangup_side=HangupSide.SYSTEM if disposition is Disposition.FAILED else None,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CdrStore]:
    s = CdrStore(tmp_path / "cdr.sqlite")
    yield s
    s.close()


@pytest.fixture
def shanghai(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC+8 (POSIX TZ string: no tzdata needed)."""
    monkeypatch.setenv("TZ", "CST-8")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# --- store ----------------------------------------------------------------------------------


def test_write_query_round_trip(store: CdrStore) -> None:
    written = store.write(answered())
    got = store.query()
    assert got == [written]
    r = got[0]
    assert (r.call_id, r.caller, r.callee, r.route_target) == ("a1", "1001", "95555", "queue:a_shares")
    assert (r.start, r.answer, r.end) == (T0, T0 + 3.25, T0 + 63.5)
    assert r.disposition is Disposition.ANSWERED and r.hangup_side is HangupSide.CALLER
    assert (r.sip_code, r.recording_path) == (200, "/var/rec/a1.wav")


def test_durations_are_computed_not_trusted(store: CdrStore) -> None:
    rec = answered(start=T0, answer=T0 + 2.0004, end=T0 + 62.5)
    rec.duration, rec.billable = 999.0, 999.0  # the caller's values are ignored
    w = store.write(rec)
    assert (w.duration, w.billable) == (62.5, 60.5)  # 60.4996 rounded to ms
    assert (rec.duration, rec.billable) == (999.0, 999.0)  # the argument is not mutated
    [r] = store.query()
    assert (r.duration, r.billable) == (62.5, 60.5)


def test_unanswered_calls_bill_nothing(store: CdrStore) -> None:
    store.write(unanswered("b", T0, Disposition.BUSY, 486, end=T0 + 0.1234))
    store.write(unanswered("n", T0 + 1, Disposition.NO_ANSWER, 480, end=T0 + 31))
    store.write(unanswered("c", T0 + 2, Disposition.CANCELLED, None, end=T0 + 9.5))
    got = {r.call_id: r for r in store.query()}
    assert got["b"].duration == 0.123 and got["b"].billable == 0.0
    assert got["n"].duration == 30.0 and got["n"].billable == 0.0 and got["n"].sip_code == 480
    assert got["c"].duration == 7.5 and got["c"].billable == 0.0 and got["c"].sip_code is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"end": T0 - 1}, "before start"),
        ({"answer": None}, "without an answer time"),
        ({"answer": T0 + 100}, "outside"),
        ({"disposition": Disposition.BUSY}, "with an answer time"),
        ({"disposition": "hung-up"}, "hung-up"),
        ({"hangup_side": "nobody"}, "nobody"),
    ],
)
def test_inconsistent_records_are_rejected(store: CdrStore, change: dict[str, object], message: str) -> None:
    rec = answered()
    for k, v in change.items():
        setattr(rec, k, v)
    with pytest.raises(ValueError, match=message):
        store.write(rec)
    assert store.query() == []


def test_plain_strings_are_accepted_for_enums() -> None:
    rec = answered()
    rec.disposition = "answered"  # type: ignore[assignment]
    rec.hangup_side = "callee"  # type: ignore[assignment]
    r = finalize(rec)
    assert r.disposition is Disposition.ANSWERED and r.hangup_side is HangupSide.CALLEE


def test_query_filters(store: CdrStore) -> None:
    store.write(answered("a", start=T0, answer=T0 + 1, end=T0 + 10))
    store.write(unanswered("b", T0 + 100, Disposition.BUSY, 486))
    store.write(answered("c", start=T0 + 200, answer=T0 + 201, end=T0 + 300))
    store.write(unanswered("d", T0 + 300, Disposition.FAILED, 503))

    def ids(**kw: object) -> list[str]:
        return [r.call_id for r in store.query(**kw)]  # type: ignore[arg-type]

    assert ids() == ["a", "b", "c", "d"]  # oldest first
    assert ids(since=T0 + 100) == ["b", "c", "d"]  # since is inclusive
    assert ids(until=T0 + 200) == ["a", "b"]  # until is exclusive
    assert ids(since=T0 + 50, until=T0 + 250) == ["b", "c"]
    assert ids(disposition=Disposition.ANSWERED) == ["a", "c"]
    assert ids(disposition="failed") == ["d"]
    assert ids(disposition="no-answer") == []
    assert ids(limit=2) == ["c", "d"]  # the latest two, still oldest first
    assert ids(disposition="answered", limit=1) == ["c"]
    assert ids(limit=0) == []
    with pytest.raises(ValueError):
        store.query(disposition="bogus")
    with pytest.raises(ValueError):
        store.query(limit=-1)


def test_write_many_is_all_or_nothing(store: CdrStore) -> None:
    done = store.write_many([answered("x"), unanswered("y", T0 + 5, Disposition.CANCELLED, None)])
    assert [r.duration for r in done] == [63.5, 20.0]
    bad = answered("z")
    bad.end = T0 - 5
    with pytest.raises(ValueError):
        store.write_many([answered("w"), bad])
    assert [r.call_id for r in store.query()] == ["x", "y"]
    assert store.write_many([]) == []


def test_database_settings_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cdr.sqlite"  # the folder is created
    with CdrStore(path) as s:
        s.write(answered())
        assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    indexes = {row[0] for row in db.execute("SELECT sql FROM sqlite_master WHERE type = 'index'")}
    assert any("(start_at)" in sql for sql in indexes) and any("(call_id)" in sql for sql in indexes)
    db.close()
    with CdrStore(path) as s:  # reopening keeps the data and the version
        assert len(s.query()) == 1
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()
    with pytest.raises(CdrError, match="newer"):
        CdrStore(path)


def test_row_survives_sigkill_right_after_write(tmp_path: Path) -> None:
    path = tmp_path / "cdr.sqlite"
    child = textwrap.dedent(
        """
        import os, signal, sys
        from softswitch.cdr import CallRecord, CdrStore, Disposition
        store = CdrStore(sys.argv[1])
        store.write(CallRecord("killed-1", "1001", "95555", "ivr:hotline", 1000.0, 1001.0, 1030.0,
                               Disposition.ANSWERED, 200, "callee", None))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", child, str(path)], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    # Killed before close(): the row is only in the WAL, which the next opener recovers.
    assert path.with_name("cdr.sqlite-wal").stat().st_size > 0
    with CdrStore(path) as s:
        [r] = s.query()
    assert (r.call_id, r.route_target, r.billable, r.hangup_side) == (
        "killed-1",
        "ivr:hotline",
        29.0,
        "callee",
    )


# --- time parsing ---------------------------------------------------------------------------


def test_parse_relative_times() -> None:
    now = 1_000_000.0
    assert parse_when("30m", now) == now - 1800
    assert parse_when("1h", now) == now - 3600
    assert parse_when("2d", now) == now - 2 * 86400
    assert parse_when("1w", now) == now - 7 * 86400
    assert parse_when("45s", now) == now - 45
    assert parse_when(" 2H ", now) == now - 7200


@given(
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from([("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]),
)
def test_relative_property(n: int, unit: tuple[str, int]) -> None:
    assert parse_when(f"{n}{unit[0]}", 2e9) == 2e9 - n * unit[1]


def test_parse_local_and_offset_times(shanghai: None) -> None:
    assert parse_when("2024-05-01") == datetime(2024, 4, 30, 16, tzinfo=UTC).timestamp()  # local midnight
    assert parse_when("2024-05-01T09:30") == T0
    assert parse_when("2024-05-01 09:30:00") == T0
    assert parse_when("2024-05-01T01:30:00Z") == T0
    assert parse_when("2024-05-01T03:30:00+02:00") == T0
    assert parse_when("2024-05-01T09:30:00.250+08:00") == T0 + 0.25
    now = datetime(2024, 5, 1, 23, 59, tzinfo=timezone(timedelta(hours=8))).timestamp()
    assert parse_when("today", now) == datetime(2024, 4, 30, 16, tzinfo=UTC).timestamp()
    assert parse_when("yesterday", now) == datetime(2024, 4, 29, 16, tzinfo=UTC).timestamp()


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)))
def test_aware_iso_round_trip(dt: datetime) -> None:
    assert parse_when(dt.isoformat()) == dt.timestamp()


@pytest.mark.parametrize("bad", ["", "yesteryear", "1y", "-1h", "2024-13-01", "1.5h", "now"])
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot parse"):
        parse_when(bad, 0.0)


# --- CLI ------------------------------------------------------------------------------------


def config(tmp_path: Path) -> Path:
    path = tmp_path / "switch.toml"
    path.write_text('[switch]\ndomain = "a.example"\ndata_dir = "var"\n[accounts.1]\npassword = "p"\n')
    return path


def fill(tmp_path: Path) -> Path:
    cfg = config(tmp_path)
    with CdrStore(db_path(tmp_path / "var")) as s:
        s.write(answered("a1"))
        s.write(unanswered("b2", T0 + 600, Disposition.BUSY, 486))
        r = answered("c3", start=T0 + 3600, answer=T0 + 3601.5, end=T0 + 3700)
        r.caller = 'Zhang, "San"'  # needs CSV quoting
        r.recording_path = "/var/rec/c3,1.wav"
        r.hangup_side = HangupSide.CALLEE
        s.write(r)
    return cfg


def test_cli_without_database_prints_no_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    assert main(["cdr", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out == "no calls\n"
    assert not (tmp_path / "var").exists()  # listing does not create a database
    assert main(["cdr", "-c", str(cfg), "--csv"]) == 0
    out = capsys.readouterr()
    assert out.out == ",".join(CSV_FIELDS) + "\r\n" and "no calls" in out.err


def test_cli_human_table(tmp_path: Path, capsys: pytest.CaptureFixture[str], shanghai: None) -> None:
    cfg = fill(tmp_path)
    assert main(["cdr", "-c", str(cfg)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "start", "caller", "callee", "target", "disposition", "code", "duration", "billable", "hangup", "recording",
    ]  # fmt: skip
    assert lines[1].split() == [
        "2024-05-01T09:30:00", "1001", "95555", "queue:a_shares", "answered", "200", "63.5", "60.2", "caller",
        "/var/rec/a1.wav",
    ]  # fmt: skip
    assert lines[2].split() == [
        "2024-05-01T09:40:00", "13800000000", "2001", "extension", "busy", "486", "20.0", "0.0",
    ]  # fmt: skip
    assert lines[3].startswith('2024-05-01T10:30:00  Zhang, "San"')
    assert lines[3].rstrip().endswith("callee  /var/rec/c3,1.wav")
    assert lines[4] == "3 calls"
    col = lines[0].index("disposition")  # columns line up
    assert [line[col:].split()[0] for line in lines[1:4]] == ["answered", "busy", "answered"]


def test_cli_csv_parses_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = fill(tmp_path)
    assert main(["cdr", "-c", str(cfg), "--csv"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\r\n") and out.count("\r\n") == 4  # header + 3 rows, RFC 4180 line ends
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert list(rows[0]) == list(CSV_FIELDS)
    assert [r["call_id"] for r in rows] == ["a1", "b2", "c3"]
    a, b, c = rows
    assert a["start"] == "2024-05-01T01:30:00.000Z" and a["answer"] == "2024-05-01T01:30:03.250Z"
    assert a["end"] == "2024-05-01T01:31:03.500Z"
    assert (a["duration"], a["billable"], a["disposition"], a["sip_code"]) == (
        "63.500",
        "60.250",
        "answered",
        "200",
    )
    assert (a["hangup_side"], a["recording_path"], a["route_target"]) == (
        "caller",
        "/var/rec/a1.wav",
        "queue:a_shares",
    )
    assert (b["answer"], b["billable"], b["sip_code"], b["hangup_side"], b["recording_path"]) == (
        "",
        "0.000",
        "486",
        "",
        "",
    )
    assert c["caller"] == 'Zhang, "San"' and c["recording_path"] == "/var/rec/c3,1.wav"
    assert datetime.fromisoformat(c["answer"]).timestamp() == T0 + 3601.5


def test_cli_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = fill(tmp_path)

    def ids(*extra: str) -> list[str]:
        assert main(["cdr", "-c", str(cfg), "--csv", *extra]) == 0
        return [r["call_id"] for r in csv.DictReader(io.StringIO(capsys.readouterr().out, newline=""))]

    assert ids("--since", "2024-05-01T01:35:00Z") == ["b2", "c3"]
    assert ids("--until", "2024-05-01T09:40:00+08:00") == ["a1"]
    assert ids("--disposition", "busy") == ["b2"]
    assert ids("--limit", "1") == ["c3"]
    assert ids("--since", "1h") == []  # these calls are from 2024
    main(["cdr", "-c", str(cfg), "--since", "today"])
    assert capsys.readouterr().out == "no calls\n"


def test_cli_recent_calls_with_relative_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    now = time.time()
    with CdrStore(db_path(tmp_path / "var")) as s:
        s.write(answered("old", start=now - 7200, answer=now - 7190, end=now - 7000))
        s.write(answered("new", start=now - 600, answer=now - 590, end=now - 500))
    assert main(["cdr", "-c", str(cfg), "--since", "30m", "--csv"]) == 0
    assert [r["call_id"] for r in csv.DictReader(io.StringIO(capsys.readouterr().out))] == ["new"]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--since", "last tuesday"], "--since"),
        (["--until", "2024-02-30"], "--until"),
        (["--limit", "0"], "--limit"),
        (["--limit", "ten"], "--limit"),
        (["--disposition", "hungup"], "--disposition"),
    ],
)
def test_cli_bad_arguments_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    cfg = config(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["cdr", "-c", str(cfg), *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}:" in err and args[1] in err


def test_cli_newer_schema_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = fill(tmp_path)
    db = sqlite3.connect(db_path(tmp_path / "var"))
    db.execute("UPDATE schema_version SET version = 2")
    db.commit()
    db.close()
    assert main(["cdr", "-c", str(cfg)]) == 1
    assert "newer" in capsys.readouterr().err


def test_cli_missing_config_exits_1(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["cdr", "-c", str(tmp_path / "nope.toml")])
    assert info.value.code == 1
