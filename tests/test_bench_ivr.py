"""Smoke test of bench/ivr.py (the IVR bench): two SIPp callers log in and get a quote, and the bench says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ivr
from tests.peers import require_tools

pytestmark = pytest.mark.peer


def test_key_schedule_and_pcap(tmp_path: Path) -> None:
    schedule = ivr.key_schedule(2.0, 0.5)
    assert [keys for _, keys in schedule] == ["6", f"{ivr.ACCOUNT}#", f"{ivr.PIN}#", "1", f"{ivr.CODE}#", "*"]
    times = [at for at, _ in schedule]
    assert times == sorted(times) and times[0] == 1.0
    digits, seconds = ivr.make_dtmf_pcap(tmp_path / "m.pcap", schedule)
    assert digits == 26 and seconds == pytest.approx(times[-1] + 0.1 + ivr.TAIL_S)


def test_flow_completed() -> None:
    quote = ["quote_name", "stock_600519", "quote_current_price", "digit_1", "unit_qian", "word_yuan",
             "quote_up", "word_percent", "digit_2"]  # fmt: skip
    ok = ["welcome_main", "enter_account", "enter_pin", "login_ok", "welcome_main", "quote_enter_code", *quote,
          "quote_menu", "welcome_main"]  # fmt: skip
    assert ivr.flow_completed(ok)
    assert not ivr.flow_completed([p for p in ok if p != "login_ok"])
    assert not ivr.flow_completed([*ok[:6], "invalid_entry", *ok[5:]])
    assert not ivr.flow_completed([*ok[:6], "quote_menu"])  # no read-out
    assert not ivr.flow_completed([p if p != "stock_600519" else "stock_600036" for p in ok])


def test_bench_ivr_smoke(tmp_path: Path) -> None:
    require_tools("sipp")
    args = ivr._parse_args(["--cps", "2", "--duration", "1", "--listen", "0.3", "--think", "0.2",
                            "--out", str(tmp_path / "run")])  # fmt: skip
    r = ivr.run(args)
    report = ivr.report(r)
    assert r["offered_calls"] == 2 and r["successful"] == 2, report
    assert r["flows_completed"] == 2 and r["success_ratio"] == 1.0, report
    assert r["digits_sent"] == 2 * 26 and r["digits_recognised"] == r["digits_sent"], report
    assert r["setup_ms"]["n"] == 2 and r["peak_concurrent"] >= 1, report
    assert ivr.passed(r), report
