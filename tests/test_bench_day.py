"""bench/day.py and bench/loadgen.py: the day's arithmetic, the pacing computation, and a short smoke run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from bench import day, loadgen
from tests.peers import require_tools

pytestmark = pytest.mark.peer

SHORT_MIX = Path(__file__).parent / "data" / "bench_day" / "short_mix.toml"


def test_shipped_curve_and_mix() -> None:
    curve = day.load_curve()
    assert len(curve) == 96 and sum(curve) == pytest.approx(1.0, abs=1e-5)
    peak = max(range(96), key=lambda q: curve[q])
    assert peak == 40  # 10:00-10:15
    assert curve[56] > curve[50] and curve[56] > curve[62]  # a 14:00 peak over lunch and the close
    assert sum(curve[88:]) < 0.01  # thin evening
    mix = day.load_mix()
    shares = {f.name: mix.share(f) for f in mix.flows}
    assert shares["quote"] == pytest.approx(0.45) and shares["order"] == pytest.approx(0.15)
    assert shares["balance"] + shares["positions"] == pytest.approx(0.25) and shares[
        "agent"
    ] == pytest.approx(0.15)


def test_window_cps_and_concurrency_by_hand(tmp_path: Path) -> None:
    rows = ["start,fraction"] + [
        f"{q // 4:02d}:{q % 4 * 15:02d},{0.5 if q in (40, 41) else 0}" for q in range(96)
    ]
    (tmp_path / "c.csv").write_text("# two quarters\n" + "\n".join(rows) + "\n")
    curve = day.load_curve(tmp_path / "c.csv")
    (tmp_path / "m.toml").write_text(
        '[flows.a]\nweight = 3\nhold_s = 60\nscript = [[1.0, "1"]]\n'
        '[flows.b]\nweight = 1\nhold_s = 120\nscript = [[1.0, "2"]]\n'
    )
    mix = day.load_mix(tmp_path / "m.toml")
    assert mix.mean_hold_s == pytest.approx(75.0)  # (3 x 60 + 1 x 120) / 4
    w = day.window_load(90_000, 1.0, curve, "10:00-10:15", mix)
    # 90,000 x 0.5 = 45,000 calls in 900 s = 50 cps; x 75 s = 3,750 concurrent
    assert (
        w["window_calls"] == 45_000 and w["cps"] == pytest.approx(50.0) and w["expected_concurrent"] == 3750
    )
    news = day.window_load(90_000, 4.0, curve, "10:00-10:30", mix)  # two quarters, a news day
    assert news["cps"] == pytest.approx(4 * 90_000 / 1800) and news["window_s"] == 1800
    half = day.window_fraction(curve, "10:05-10:10")
    assert half[0] == pytest.approx(0.5 / 3) and half[1] == 300


def test_interleave_follows_the_weights() -> None:
    seq = day.interleave([0.45, 0.25, 0.15, 0.15], 100)
    assert [seq.count(i) for i in range(4)] == [45, 25, 15, 15]
    first20 = seq[:20]
    assert [first20.count(i) for i in range(4)] == [9, 5, 3, 3]


def test_flow_completed() -> None:
    mix = day.load_mix(SHORT_MIX)
    quote, balance, agent = mix.flows
    assert day.flow_completed(
        ["welcome_main", "quote_enter_code", "quote_name", "stock_600519", "quote_menu"], quote
    )
    assert not day.flow_completed(["welcome_main", "invalid_entry", "quote_name", "stock_600519"], quote)
    assert day.flow_completed(
        ["welcome_main", "quote_name", "stock_600519", "no_input"], quote
    )  # after: fine
    assert not day.flow_completed(["welcome_main", "enter_account", "login_failed"], balance)
    assert not day.flow_completed(["welcome_main", "queue_please_hold"], agent)
    assert day.flow_completed(["welcome_main", "queue_please_hold"], agent, connected=True)


def test_plan_keys_and_overlap() -> None:
    plan = loadgen.make_plan([(1.0, "12#")])
    assert plan.digits == 3
    assert list(plan.key_start.nonzero()[0]) == [50, 60, 70]
    assert list(plan.event[50:60]) == [1] * 7 + [-1] * 3 and list(plan.k[50:57]) == list(range(1, 8))
    assert plan.event[70] == 11  # '#'
    with pytest.raises(ValueError):
        loadgen.make_plan([(1.0, "12"), (1.1, "3")])


def test_lateness_relative_to_each_streams_best() -> None:
    # stream 0: on time, then 3 ms and 12 ms late; stream 1 (another origin): 0, 1, 0 ms
    call = np.array([0, 0, 0, 1, 1, 1])
    slot = np.array([0.0, 0.02, 0.04, 0.0, 0.02, 0.04])
    arrival = np.array([5.0, 5.023, 5.052, 9.0, 9.021, 9.04])
    late = loadgen.lateness_ms(call, arrival - slot)
    assert late == pytest.approx([0, 3, 12, 0, 1, 0], abs=1e-6)
    s = loadgen.pacing_summary(late)
    assert s["packets"] == 6 and s["max_ms"] == pytest.approx(12) and s["p50_ms"] == pytest.approx(0.5)
    assert loadgen.pacing_summary(np.zeros(0))["p99_ms"] is None


def test_bench_day_smoke(tmp_path: Path) -> None:
    """A few seconds of a scaled-down window with short flows against a switch the bench starts."""
    require_tools("sipp")
    argv = ["day", "--calls-per-day", "20000", "--window", "10:00-10:15", "--duration", "5", "--scale", "2",
            "--mix", str(SHORT_MIX), "--out", str(tmp_path / "run"), "--json", str(tmp_path / "r.json")]  # fmt: skip
    a = day.parse(argv)
    mix = day.load_mix(a.mix)
    load = day.window_load(a.calls_per_day, a.news_day, day.load_curve(a.curve), a.window, mix)
    r = day.play(a, mix, [(load["cps"] * a.scale, a.duration)], ramp=False)
    text = day.report(r)
    json.dumps(r, default=str)
    row = r["rows"][0]
    j = row["judged"]
    assert 6 <= j["calls_judged"] <= 16, text
    assert j["success"] == 1.0 and not j["failures_by_code"], text
    assert j["per_flow"]["agent"].get("ok", 0) >= 1, text  # an agent answered
    assert j["digits_sent"] > 0 and j["digits_recognised"] == j["digits_sent"], text
    assert row["setup_ms"]["n"] == j["calls_judged"] and row["setup_ms"]["p99"] < 1000, text
    assert row["pacing"]["packets"] > 1000 and 0 <= row["pacing"]["p99_ms"] < 100, text
    assert row["cpu"]["switch_pct"] > 0 and row["peak_concurrent"] >= 3, text
    assert r["switch_log"]["tracebacks"] == 0 and r["switch_log"]["exit"] == 0, text


def test_args_pass_through() -> None:
    a = day.parse(["ramp", "--media-workers", "2", "--rtp-mode", "shared", "--start", "2", "--max", "4"])
    assert isinstance(a, argparse.Namespace) and a.media_workers == 2 and a.rtp_mode == "shared"
    assert (a.start, a.step, a.step_duration) == (2, 5, 60)
