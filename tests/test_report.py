"""``softswitch report``: queue and agent statistics from a hand-built queue log of one known day.

Every expected figure below is worked out by hand from the log (see the comments), not by calling
the code under test. Local time is UTC+8; the day is 2024-05-01, which starts at D0.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from softswitch.acd.queue_log import QueueLog
from softswitch.acd.report import (
    ALL,
    AgentStats,
    QueueStats,
    Report,
    add_report_parser,
    compute,
    day_bounds,
    format_report,
    load_entries,
    parse_interval,
    plot,
    run_report,
    write_csv,
)

D0 = 1_714_492_800.0  # 2024-05-01T00:00:00+08:00
H = 3600.0
LEVELS = {"a_shares": 20.0, "hk_stocks": 30.0, "funds": 20.0}


@dataclass(frozen=True, slots=True)
class Entry:  # the shape of softswitch.acd.core.QueueLogEntry
    time: float
    call_id: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]


def at(hms: str, day: int = 0) -> float:
    h, m, s = (int(x) for x in hms.split(":"))
    return D0 + day * 86400 + h * 3600 + m * 60 + s


def call(hms: str, cid: str, queue: str, agent: str, event: str, *data: object, day: int = 0) -> Entry:
    return Entry(at(hms, day), cid, queue, agent, event, tuple(str(d) for d in data))


def agent_ev(hms: str, agent: str, event: str, *data: object, day: int = 0) -> Entry:
    return Entry(at(hms, day), "NONE", "NONE", agent, event, tuple(str(d) for d in data))


A, K = "a_shares", "hk_stocks"
N = "NONE"

LOG = sorted(
    [
        # --- the day before -------------------------------------------------------------------
        agent_ev("08:00:00", "2004", "AGENTLOGIN", "2004", day=-1),
        agent_ev("16:00:00", "2004", "PAUSE", "break", day=-1),
        agent_ev("17:00:00", "2004", "AGENTLOGOFF", "2004", 32400, day=-1),  # 2004: gone before the day
        agent_ev("22:00:00", "2001", "AGENTLOGIN", "2001", day=-1),  # 2001 logged in across midnight
        agent_ev("23:00:00", "2001", "PAUSE", "tea", day=-1),
        agent_ev("23:10:00", "2001", "UNPAUSE", "", day=-1),
        agent_ev("23:00:00", "2003", "AGENTLOGIN", "2003", day=-1),
        agent_ev("23:30:00", "2003", "PAUSE", "meeting", day=-1),  # 2003 paused across midnight
        call(
            "23:54:00", "y1", A, N, "ENTERQUEUE", "", "138", day=-1
        ),  # yesterday's call, talk crosses midnight
        call("23:55:00", "y1", A, "2001", "CONNECT", 60, "y1-b", 2, day=-1),
        # --- the day ----------------------------------------------------------------------------
        call("00:05:00", "y1", A, "2001", "COMPLETECALLER", 60, 600, 1),  # talk 23:55-00:05: 300 s today
        agent_ev("00:45:00", "2003", "UNPAUSE", ""),
        agent_ev("01:00:00", "2003", "AGENTLOGOFF", "2003", 7200),
        agent_ev("07:00:00", "2005", "AGENTLOGOFF", "2005", 3600),  # login not in the log: 06:00-07:00
        agent_ev("08:00:00", "2002", "AGENTLOGIN", "2002"),
        call("09:00:00", "c1", A, N, "ENTERQUEUE", "", "139"),
        call("09:00:10", "c1", A, "2001", "CONNECT", 10, "c1-b", 1),
        call("09:01:00", "c2", A, N, "ENTERQUEUE", "", "137"),
        call("09:01:15", "c2", A, "2002", "RINGNOANSWER", 15000),
        call("09:02:00", "c3", A, N, "ENTERQUEUE", "", "136"),
        call("09:02:05", "c3", A, N, "ABANDON", 2, 3, 5),  # short abandon (5 <= 20)
        call("09:03:00", "c4", A, N, "ENTERQUEUE", "", "135"),
        call("09:03:45", "c4", A, N, "ABANDON", 2, 3, 45),  # long abandon
        call("09:05:10", "c1", A, "2001", "COMPLETEAGENT", 10, 300, 1),
        call("09:06:00", "c2", A, "2001", "CONNECT", 60, "c2-b", 15),  # 60 > 20: outside SL
        call("09:08:00", "c2", A, "2001", "COMPLETECALLER", 60, 120, 2),
        call("09:20:00", "c5", A, N, "ENTERQUEUE", "", "vip-caller"),  # VIP
        call("09:20:20", "c5", A, "2002", "CONNECT", 20, "c5-b", 2),  # exactly T: within SL
        call("09:25:20", "c5", A, "2002", "TRANSFER", "3000", "", 20, 300, 1),
        call("10:10:00", "c6", A, N, "ENTERQUEUE", "", "134"),
        call("10:15:00", "c6", A, N, "EXITWITHTIMEOUT", 1, 1, 300),  # on_timeout = queue:hk_stocks
        call("10:15:00", "c6", K, N, "ENTERQUEUE", "", "134"),
        call("10:15:30", "c6", K, "2002", "CONNECT", 30, "c6-b", 3),  # 30 <= 30 (hk_stocks T)
        call("10:20:00", "c7", A, N, "ENTERQUEUE", "", "133"),
        call("10:20:30", "c6", K, "2002", "COMPLETECALLER", 30, 300, 1),
        call("10:20:30", "c7", A, N, "EXITWITHKEY", "*", 1, 1, 30),
        call("10:30:00", "c8", A, N, "ENTERQUEUE", "", "132"),
        call("10:31:00", "c8", A, N, "VOICEMAIL", 1, 1, 60),
        call("10:40:00", "c9", A, N, "ENTERQUEUE", "", "131"),
        call("10:40:40", "c9", A, N, "CALLBACK", "13900000000", 1, 40),
        call("10:50:00", "c9", A, "2002", "CONNECT", 600, "c9-b", 5),  # the callback: not "answered"
        call("10:50:30", "c9", A, "2002", "CALLBACKCONNECT", "13900000000"),
        call("10:55:00", "c9", A, "2002", "COMPLETEAGENT", 600, 300, 1),
        agent_ev("10:30:00", "2003", "PAUSE", "ignored: logged out"),
        agent_ev("11:00:00", "2003", "AGENTLOGIN", "2003"),
        call("11:00:00", "h1", K, N, "ENTERQUEUE", "", "201"),
        call("11:00:25", "h1", K, "2003", "CONNECT", 25, "h1-b", 1),  # 25 <= 30: within SL
        call("11:05:00", "h2", K, N, "ENTERQUEUE", "", "202"),
        call("11:05:25", "h2", K, N, "ABANDON", 1, 1, 25),  # short for hk_stocks (25 <= 30)
        call("11:10:25", "h1", K, "2003", "COMPLETECALLER", 25, 600, 1),
        call("11:20:00", "h3", K, N, "ENTERQUEUE", "", "203"),
        call("11:20:15", "h3", K, "2003", "RINGNOANSWER", 15000),
        call("11:20:40", "h3", K, "2003", "CONNECT", 40, "h3-b", 1),  # 40 > 30
        call("11:30:40", "h3", K, "2003", "COMPLETEAGENT", 40, 600, 1),
        agent_ev("12:00:00", "2003", "AGENTLOGOFF", "2003", 3600),
        agent_ev("12:00:00", "2001", "PAUSE", "lunch"),
        agent_ev("13:00:00", "2001", "UNPAUSE", ""),
        call("14:30:00", "h5", K, N, "DIVERT", "wait"),
        call("15:00:00", "h4", K, N, "ENTERQUEUE", "", "204"),  # never finished: "open"
        agent_ev("18:00:00", "2001", "AGENTLOGOFF", "2001", 72000),
        agent_ev("20:00:00", "2002", "PAUSE", "training"),
        agent_ev("21:00:00", "2002", "UNPAUSE", ""),  # 2002 stays logged in past midnight
        call("23:59:50", "c10", A, N, "ENTERQUEUE", "", "130"),
        # --- the day after ----------------------------------------------------------------------
        call("00:00:05", "c10", A, "2002", "CONNECT", 15, "c10-b", 1, day=1),
        call("00:02:05", "c10", A, "2002", "COMPLETECALLER", 15, 120, 1, day=1),
        agent_ev("02:00:00", "2002", "AGENTLOGOFF", "2002", 64800, day=1),
        call("09:00:00", "n1", A, N, "ENTERQUEUE", "", "999", day=1),
    ],
    key=lambda e: e.time,  # stable: equal times keep the order above
)


@pytest.fixture
def shanghai(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "CST-8")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def data_dir(tmp_path: Path, shanghai: None) -> Path:
    with QueueLog(tmp_path) as qlog:
        qlog.write(LOG)
    return tmp_path


def report_for(data_dir: Path, interval_s: int | None = None) -> Report:
    start, end = day_bounds(date(2024, 5, 1))
    with QueueLog(data_dir) as qlog:
        entries = load_entries(qlog, start, end)
    return compute(
        entries,
        start,
        end,
        interval_s=interval_s,
        service_levels=LEVELS,
        queues=LEVELS,
        now=start + 10 * 86400,
    )


def by_name(rows: list[QueueStats]) -> dict[str, QueueStats]:
    return {r.name: r for r in rows}


def agents(rows: list[AgentStats]) -> dict[str, AgentStats]:
    return {r.agent: r for r in rows}


def test_day_bounds_local_midnight(shanghai: None) -> None:
    assert day_bounds(date(2024, 5, 1)) == (D0, D0 + 86400)


def test_day_bounds_on_a_dst_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
    time.tzset()
    try:
        a, b = day_bounds(date(2024, 3, 31))
        assert b - a == 23 * 3600
        a, b = day_bounds(date(2024, 10, 27))
        assert b - a == 25 * 3600
    finally:
        monkeypatch.undo()
        time.tzset()


def test_queue_figures_of_the_day(data_dir: Path) -> None:
    q = by_name(report_for(data_dir).queues)
    assert list(q) == ["a_shares", "funds", "hk_stocks", ALL]
    a = q["a_shares"]
    # c1..c10 entered today (y1 yesterday, n1 tomorrow): answered c1 (10 s), c2 (60), c5 (20), c10 (15).
    assert (a.offered, a.answered, a.abandoned, a.abandoned_short) == (10, 4, 2, 1)
    assert (a.timeout, a.exit_key, a.voicemail, a.callback, a.exit_empty, a.open, a.diverted) == (
        1,
        1,
        1,
        1,
        0,
        0,
        0,
    )
    assert a.sl_threshold == 20
    assert a.answered_in_sl == 3  # c1, c5 (20 <= 20), c10
    assert a.answer_rate == pytest.approx(4 / 10)
    assert a.sl1 == pytest.approx(3 / 4)  # in SL / answered
    assert a.sl2 == pytest.approx(3 / 9)  # in SL / (offered 10 - 1 short abandon)
    assert a.asa == pytest.approx((10 + 60 + 20 + 15) / 4)
    assert a.max_wait == 300  # c6's timeout
    assert a.aht == pytest.approx((300 + 120 + 300 + 120) / 4)  # c1, c2, c5 (transfer), c10 (ends tomorrow)

    k = q["hk_stocks"]
    # h1 (25 s), h2 abandons at 25, h3 (40 s), c6 moved in from a_shares (30 s), h4 open; h5 diverted.
    assert (k.offered, k.answered, k.abandoned, k.abandoned_short, k.open, k.diverted) == (5, 3, 1, 1, 1, 1)
    assert (k.timeout, k.exit_key, k.voicemail, k.callback) == (0, 0, 0, 0)
    assert k.sl_threshold == 30 and k.answered_in_sl == 2  # h1, c6
    assert k.sl1 == pytest.approx(2 / 3)
    assert k.sl2 == pytest.approx(2 / 4)
    assert k.asa == pytest.approx((25 + 40 + 30) / 3)
    assert k.max_wait == 40
    assert k.aht == pytest.approx((600 + 600 + 300) / 3)

    f = q["funds"]  # configured, no calls
    assert f.offered == 0 and f.answer_rate is None and f.sl1 is None and f.sl2 is None and f.asa is None

    t = q[ALL]
    assert (t.offered, t.answered, t.abandoned, t.abandoned_short, t.open, t.diverted) == (15, 7, 3, 2, 1, 1)
    assert t.sl_threshold is None  # 20 and 30: mixed
    assert t.sl1 == pytest.approx(5 / 7)
    assert t.sl2 == pytest.approx(5 / 13)
    assert t.asa == pytest.approx(200 / 7)
    assert t.max_wait == 300
    assert t.aht == pytest.approx(2340 / 7)


def test_agent_figures_of_the_day(data_dir: Path) -> None:
    ag = agents(report_for(data_dir).agents)
    assert sorted(ag) == ["2001", "2002", "2003", "2005"]  # 2004 logged off the day before
    a1 = ag["2001"]
    # CONNECTs today: c1, c2 (y1's was yesterday). Completed today: y1 (600), c1 (300), c2 (120).
    assert (a1.answered, a1.no_answer, a1.talk_calls) == (2, 0, 3)
    assert a1.aht == pytest.approx(1020 / 3)
    assert a1.talk_time == pytest.approx(300 + 300 + 120)  # y1 clipped at midnight
    assert a1.logged_in == pytest.approx(18 * H)  # 00:00 (clipped) - 18:00
    assert a1.paused == pytest.approx(1 * H)  # 12:00 - 13:00; yesterday's pause ended at 23:10
    assert a1.occupancy == pytest.approx(720 / (17 * H))
    a2 = ag["2002"]
    # CONNECTs today: c5, c6 (hk), c9 (callback); c10 connects tomorrow. RINGNOANSWER on c2.
    assert (a2.answered, a2.no_answer, a2.talk_calls) == (3, 1, 3)
    assert a2.aht == pytest.approx(300)
    assert a2.talk_time == pytest.approx(900)
    assert a2.logged_in == pytest.approx(16 * H)  # 08:00 - midnight (still logged in)
    assert a2.paused == pytest.approx(1 * H)
    assert a2.occupancy == pytest.approx(900 / (15 * H))
    a3 = ag["2003"]
    assert (a3.answered, a3.no_answer, a3.talk_calls) == (2, 1, 2)
    assert a3.talk_time == pytest.approx(1200)
    assert a3.logged_in == pytest.approx(2 * H)  # 00:00-01:00 and 11:00-12:00
    assert a3.paused == pytest.approx(45 * 60)  # paused since yesterday 23:30, until 00:45
    assert a3.occupancy == pytest.approx(1200 / (2 * H - 45 * 60))
    a5 = ag["2005"]
    assert (a5.logged_in, a5.paused, a5.talk_time, a5.occupancy, a5.aht) == (H, 0, 0, 0, None)


def test_sessions_still_open_are_cut_at_now(data_dir: Path) -> None:
    start, end = day_bounds(date(2024, 5, 1))
    with QueueLog(data_dir) as qlog:
        entries = load_entries(qlog, start, end)
    ag = agents(compute(entries, start, end, now=at("22:30:00")).agents)
    assert ag["2002"].logged_in == pytest.approx(14.5 * H)  # 08:00 - 22:30


def test_hourly_intervals(data_dir: Path) -> None:
    r = report_for(data_dir, interval_s=3600)
    rows = {(round((s.start - D0) / H), s.name): s for s in r.queue_intervals}
    assert [h for h, name in rows if name == ALL] == list(range(24))  # ALL for every hour
    assert sorted(k for k in rows if k[1] != ALL) == [
        (9, A), (10, A), (10, K), (11, K), (14, K), (15, K), (23, A),
    ]  # fmt: skip
    a9 = rows[(9, A)]  # c1 (10 s), c2 (60 s), c3 short abandon, c4 long abandon, c5 (20 s)
    assert (a9.offered, a9.answered, a9.abandoned, a9.abandoned_short, a9.answered_in_sl) == (5, 3, 2, 1, 2)
    assert a9.sl1 == pytest.approx(2 / 3) and a9.sl2 == pytest.approx(2 / 4)
    assert a9.asa == pytest.approx(30) and a9.max_wait == 60 and a9.aht == pytest.approx(240)
    a10 = rows[(10, A)]  # c6 timeout, c7 key, c8 voicemail, c9 callback
    assert (a10.offered, a10.answered, a10.timeout, a10.exit_key, a10.voicemail, a10.callback) == (
        4,
        0,
        1,
        1,
        1,
        1,
    )
    assert a10.sl1 is None and a10.sl2 == 0
    t10 = rows[(10, ALL)]
    assert (t10.offered, t10.answered, t10.answered_in_sl) == (5, 1, 1)
    assert rows[(14, K)].offered == 0 and rows[(14, K)].diverted == 1
    assert rows[(23, A)].answered == 1 and rows[(23, A)].aht == 120
    assert rows[(3, ALL)].offered == 0 and rows[(3, ALL)].sl1 is None
    ag = {(round((s.start - D0) / H), s.agent): s for s in r.agent_intervals}
    assert ag[(0, "2003")].logged_in == pytest.approx(H) and ag[(0, "2003")].paused == pytest.approx(45 * 60)
    assert ag[(0, "2001")].talk_time == pytest.approx(300)
    assert ag[(12, "2001")].paused == pytest.approx(H)
    assert (9, "2001") in ag and ag[(9, "2001")].answered == 2
    assert ag[(9, "2001")].talk_time == pytest.approx(300 + 120)
    # the intervals add up to the day
    for name in ("2001", "2002", "2003"):
        day = agents(r.agents)[name]
        parts = [s for (_, n), s in ag.items() if n == name]
        assert sum(s.logged_in for s in parts) == pytest.approx(day.logged_in)
        assert sum(s.talk_time for s in parts) == pytest.approx(day.talk_time)


def test_quarter_hour_intervals(data_dir: Path) -> None:
    r = report_for(data_dir, interval_s=900)
    assert len([s for s in r.queue_intervals if s.name == ALL]) == 96
    rows = {(round((s.start - D0) / 900), s.name): s for s in r.queue_intervals}
    assert rows[(36, A)].offered == 4  # 09:00-09:15: c1-c4
    assert rows[(37, A)].offered == 1  # 09:15-09:30: c5
    assert rows[(44, K)].offered == 2  # 11:00-11:15: h1, h2
    assert rows[(45, K)].offered == 1  # 11:15-11:30: h3
    ag = {(round((s.start - D0) / 900), s.agent): s for s in r.agent_intervals}
    assert ag[(2, "2003")].paused == pytest.approx(900)  # 00:30-00:45
    assert ag[(3, "2003")].paused == 0 and ag[(3, "2003")].logged_in == pytest.approx(900)


def test_parse_interval() -> None:
    assert [parse_interval(s) for s in ("15m", "30m", "1h", "2h")] == [900, 1800, 3600, 7200]
    for bad in ("0m", "15", "25h", "1d", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_interval(bad)


def test_text_table(data_dir: Path) -> None:
    lines = format_report(report_for(data_dir, 3600))
    text = "\n".join(lines)
    assert "SL1 = answered within T / answered" in text
    assert "SL2 = answered within T / (offered - abandoned within T)" in text
    assert "AHT = average talk time (wrap-up is not logged)" in text
    [row] = [ln for ln in lines if ln.startswith("a_shares ")]
    assert row.split() == ["a_shares", "10", "4", "2", "1", "1", "1", "1", "1", "0", "0", "0", "40.0", "20", "75.0", "33.3", "26.2", "300", "210.0"]  # fmt: skip
    [row] = [ln for ln in lines if ln.startswith("ALL ")]
    assert row.split()[13:16] == ["mixed", "71.4", "38.5"]
    [row] = [ln for ln in lines if ln.startswith("2003 ")]
    assert row.split() == ["2003", "2", "1", "0:20:00", "600.0", "2:00:00", "0:45:00", "26.7"]
    widths = {len(ln) for ln in lines[5:9]}  # header + rows of the queue table are aligned
    assert len(widths) == 1
    assert "09:00  a_shares" in text  # the per-interval table


def test_csv_parses_back(data_dir: Path) -> None:
    out = io.StringIO()
    write_csv(report_for(data_dir, 3600), out)
    assert out.getvalue().endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    day = "2024-05-01T00:00:00+08:00"
    [a] = [
        r
        for r in rows
        if r["kind"] == "queue"
        and r["name"] == A
        and r["period_start"] == day
        and r["period_end"] == "2024-05-02T00:00:00+08:00"
    ]
    assert (a["offered"], a["answered"], a["abandoned"], a["abandoned_short"]) == ("10", "4", "2", "1")
    assert (a["sl_threshold_s"], a["sl1"], a["sl2"], a["answer_rate"]) == ("20", "0.7500", "0.3333", "0.4000")
    assert (a["asa_s"], a["max_wait_s"], a["aht_s"]) == ("26.2", "300.0", "210.0")
    [t] = [
        r
        for r in rows
        if r["kind"] == "total" and r["period_start"] == day and r["period_end"].startswith("2024-05-02")
    ]
    assert (t["offered"], t["sl_threshold_s"], t["sl2"]) == ("15", "", "0.3846")
    [g] = [
        r
        for r in rows
        if r["kind"] == "agent"
        and r["name"] == "2003"
        and r["period_start"] == day
        and r["period_end"].startswith("2024-05-02")
    ]
    assert (g["answered"], g["talk_s"], g["logged_in_s"], g["paused_s"], g["occupancy"]) == (
        "2", "1200.0", "7200.0", "2700.0", "0.2667",
    )  # fmt: skip
    assert g["offered"] == ""
    [h] = [
        r
        for r in rows
        if r["kind"] == "queue" and r["name"] == K and r["period_start"] == "2024-05-01T11:00:00+08:00"
    ]
    assert (h["offered"], h["answered"], h["sl1"]) == ("3", "2", "0.5000")


def test_plot_writes_a_png(data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "calls.png"
    plot(report_for(data_dir, 1800), out)
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


# --- command line ----------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="softswitch")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_parser(sub)
    return parser.parse_args(["report", "-c", "x.toml", *argv])


def fake_config(data_dir: Path, **queues: Any) -> Any:
    return SimpleNamespace(data_dir=data_dir, raw={"queues": queues})


def test_cli_text_uses_the_queues_service_level(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = fake_config(data_dir, a_shares={"skill": "a"}, hk_stocks={"skill": "h", "service_level_s": 30})
    assert run_report(parse("--date", "2024-05-01"), cfg) == 0
    out = capsys.readouterr().out
    [row] = [ln for ln in out.splitlines() if ln.startswith("hk_stocks ")]
    assert row.split()[13:16] == ["30", "66.7", "50.0"]
    [row] = [ln for ln in out.splitlines() if ln.startswith("a_shares ")]
    assert row.split()[13:16] == ["20", "75.0", "33.3"]
    assert "Per 60 min" not in out


def test_cli_sl_option_overrides(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = fake_config(data_dir, hk_stocks={"service_level_s": 30})
    assert run_report(parse("--date", "2024-05-01", "--sl", "10", "--interval", "1h"), cfg) == 0
    out = capsys.readouterr().out
    [row] = [ln for ln in out.splitlines() if ln.startswith("hk_stocks ")]
    assert row.split()[13:16] == ["10", "0.0", "0.0"]  # h1 25 s, c6 30 s > 10; no short abandon
    [row] = [ln for ln in out.splitlines() if ln.startswith("a_shares ")]
    assert row.split()[13:16] == ["10", "25.0", "11.1"]  # c1 only; c3 (5 s) short: 1 / (10 - 1)
    assert "Per 60 min interval" in out


def test_cli_parsed_queue_settings(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = fake_config(data_dir)
    cfg.queues = {
        "hk_stocks": SimpleNamespace(service_level_s=40.0),
        "a_shares": SimpleNamespace(service_level_s=5.0),
    }
    assert run_report(parse("--date", "2024-05-01"), cfg) == 0
    out = capsys.readouterr().out
    [row] = [ln for ln in out.splitlines() if ln.startswith("hk_stocks ")]
    assert row.split()[13:16] == ["40", "100.0", "75.0"]  # 3 in SL; short abandons: h2 (25 <= 40)


def test_cli_csv_to_stdout_and_file_and_plot(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = fake_config(data_dir)
    assert run_report(parse("--date", "2024-05-01", "--csv"), cfg) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["kind"] for r in rows} == {"queue", "total", "agent"}
    path = tmp_path / "r.csv"
    png = tmp_path / "r.png"
    pytest.importorskip("matplotlib")
    assert run_report(parse("--date", "2024-05-01", "--csv", str(path), "--plot", str(png)), cfg) == 0
    assert "Queue report for 2024-05-01" in capsys.readouterr().out  # text still printed
    assert path.read_bytes().decode() == out
    assert png.read_bytes().startswith(b"\x89PNG")


def test_cli_without_a_queue_log(tmp_path: Path, shanghai: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_report(parse("--date", "yesterday"), fake_config(tmp_path / "empty")) == 0
    out = capsys.readouterr().out
    assert "no agent activity" in out and out.splitlines()[6].split()[:2] == ["ALL", "0"]
    assert not (tmp_path / "empty").exists()  # a report does not create the database


def test_cli_rejects_bad_dates() -> None:
    with pytest.raises(SystemExit):
        parse("--date", "May 1st")
