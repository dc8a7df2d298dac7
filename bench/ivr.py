"""IVR bench: SIPp callers log in and get a quote on the trading hotline by RFC 4733 DTMF.

    python -m bench.ivr [--cps 5] [--duration 20] [--listen 10] [--callers 100] [--lang zh]
                        [--json] [--out DIR]

It starts a switch on free loopback ports: callers 1001.. (password ``pw<user>``) in an accounts CSV,
the route ``95565 -> ivr:hotline``, the SimBroker (``softswitch broker seed``: demo account 10000001,
PIN 123456), the menu ``hotline`` (prompt ``welcome_main``; key 6 = ``flow:login``, 1 =
``flow:quote``), an RTP port range sized for the load, logging at info (the IVR's per-call
``ivr <call_id> prompts: ...`` line is how a completed flow is recognised).

A SIPp UAC (``bench/sipp/uac_ivr.xml``) places ``cps * duration`` calls at ``--cps``: INVITE -> 407
-> INVITE with credentials -> 200, ACK, then plays one pcap (G.711 u-law 500 Hz tone with RFC 4733
events, pt 101, 100 ms each, 200 ms apart) keying, from the answer::

    1.0 s  6                  login
    2.0 s  10000001#          account
    4.5 s  123456#            PIN        -> login_ok, back to the menu
    8.0 s  1                  quote
    9.0 s  600519#            stock code -> the quote is read out
    9 + listen s  *           back to the menu (the caller listened to the quote for --listen s)

then BYE 1.5 s later: 26 digits per call.

Printed: CPS offered and achieved (calls created / SIPp's creation window); peak concurrent calls
(SIPp's ``CurrentCall``, which counts a 0.5 s timewait after each BYE); SIPp's successful/failed
calls; flows completed (the call's prompts line has ``login_ok`` and then the whole quote
read-out, with no ``invalid_entry``, ``no_input`` or ``login_failed``) and the success ratio (SIPp
success and flow completed, over offered calls); DTMF digits recognised by the switch against digits
sent (26 per call that reached the IVR); setup latency p50/p99/max (first INVITE -> 200 at the
caller, SIPp rtd); the switch's CPU and RSS; ERROR lines and tracebacks in its log. The whole run is
bounded by duration + call length + 60 s.

Digits recognised: the switch's ``ivr <call_id> digits: N`` lines (every digit the media engine
delivered to the call, counted, never logged themselves).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.calls import SIPP_COMMON, Sampler, Sipp, _elapsed_s, _int, _port_outside, _udp_counters, stat_rows
from bench.register import source_fingerprint
from softswitch.codecs.g711 import ulaw_encode
from softswitch.codecs.telephone_event import TelephoneEvent, digit_event, encode_event
from tests.peers import (
    LOOPBACK,
    Switch,
    free_port_range,
    make_users,
    percentile,
    sipp_result,
    write_injection,
)
from tests.rtp_pcap import write_pcap

HERE = Path(__file__).resolve().parent
UAC_XML = HERE / "sipp" / "uac_ivr.xml"
HOTLINE = "95565"
ACCOUNT, PIN = "10000001", "123456"  # the seeded demo account
CODE = "600519"
TE_PT = 101
FRAME = 160  # 20 ms at 8 kHz
KEY_MS, GAP_MS = 100, 100  # one RFC 4733 event, then a pause, per digit
TAIL_S = 1.5  # from the last key to the BYE
CALL_DIGITS_LINE = re.compile(r"ivr (\S+) digits: (\d+)")
PROMPTS_LINE = re.compile(r"ivr (\S+) prompts: (.*)")

HOTLINE_TOML = f"""
[[routes]]
match = "{HOTLINE}"
to = "ivr:hotline"

[trading]
backend = "sim"

[ivr.hotline]
prompt = "welcome_main"
timeout_s = 5
retries = 3
[ivr.hotline.keys]
"1" = "flow:quote"
"6" = "flow:login"
"""


def key_schedule(listen_s: float, think_s: float = 0.8) -> list[tuple[float, str]]:
    """(seconds from the answer, keys) of one call: login, then a quote listened to for ``listen_s``.

    Each entry starts ``think_s`` after the previous one's last key (plus the length of login_ok
    before the menu key), the first one second into the menu.
    """
    key_s = (KEY_MS + GAP_MS) / 1000
    out: list[tuple[float, str]] = []
    at = 1.0
    for keys, pause in (("6", 0.0), (f"{ACCOUNT}#", think_s), (f"{PIN}#", think_s), ("1", think_s + 1.3),
                        (f"{CODE}#", think_s), ("*", listen_s)):  # fmt: skip
        if out:
            at = round(out[-1][0] + len(out[-1][1]) * key_s - GAP_MS / 1000 + pause, 2)
        out.append((at, keys))
    return out


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.ivr", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--cps", type=float, default=5.0, help="new calls per second (default 5)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of new calls (default 20)")
    ap.add_argument("--listen", type=float, default=10.0,
                    help="seconds the caller listens to the quote before pressing * (default 10)")  # fmt: skip
    ap.add_argument("--think", type=float, default=0.8,
                    help="seconds between the caller's entries (default 0.8; digits typed ahead still count)")  # fmt: skip
    ap.add_argument("--callers", type=int, default=100, help="caller accounts cycled by SIPp (default 100)")
    ap.add_argument("--lang", default="zh", choices=["zh", "en"], help="the switch's language (default zh)")
    ap.add_argument(
        "--limit", type=int, help="SIPp -l, max concurrent calls (default: 2 x cps x call length)"
    )
    ap.add_argument("--out", help="folder for config, logs, SIPp files (default: temp, removed)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    return ap.parse_args(argv)


# ---------------------------------------------------------------- the caller's pcap


def make_dtmf_pcap(path: Path, schedule: Sequence[tuple[float, str]]) -> tuple[int, float]:
    """A G.711 u-law RTP pcap: a 500 Hz tone at about -20 dBFS with ``schedule``'s keys as RFC 4733
    events (KEY_MS long, GAP_MS apart; the audio pauses during an event, as a phone's does).

    Returns (digits, seconds of the pcap).
    """
    starts: dict[int, str] = {}
    for at, keys in schedule:
        frame = round(at / 0.02)
        for key in keys:
            assert frame not in starts, f"keys overlap at {frame * 0.02:.2f} s"
            starts[frame] = key
            frame += (KEY_MS + GAP_MS) // 20
    n_frames = max(starts) + (KEY_MS // 20) + round(TAIL_S / 0.02)
    tone = (3000 * np.sin(2 * np.pi * 500 * np.arange(n_frames * FRAME) / 8000)).astype(np.int16)
    codes = ulaw_encode(tone)
    packets: list[tuple[float, bytes]] = []
    t0, seq, ssrc, head = 1_700_000_000.0, 1000, 0x5EB0D7F0, "!BBHII"
    event_frames = KEY_MS // 20
    i = 0
    while i < n_frames:
        if i in starts:
            event, ts = digit_event(starts[i]), i * FRAME
            for k in range(1, event_frames + 1):
                end = k == event_frames
                body = encode_event(TelephoneEvent(event, end, 10, FRAME * k))
                for _ in range(3 if end else 1):  # the end packet three times (RFC 4733 2.5.1.4)
                    marker = 0x80 if k == 1 else 0
                    packets.append((t0 + (i + k - 1) * 0.02,
                                    struct.pack(head, 0x80, marker | TE_PT, seq, ts, ssrc) + body))  # fmt: skip
                    seq = (seq + 1) & 0xFFFF
            i += event_frames
            continue
        payload = codes[i * FRAME : (i + 1) * FRAME].tobytes()
        packets.append((t0 + i * 0.02, struct.pack(head, 0x80, 0, seq, i * FRAME, ssrc) + payload))
        seq = (seq + 1) & 0xFFFF
        i += 1
    write_pcap(path, packets)
    return len(starts), n_frames * 0.02


# ---------------------------------------------------------------- judging the calls


def flow_completed(prompts: Sequence[str], code: str = CODE) -> bool:
    """Logged in, then the whole quote of ``code`` read out, without a wrong or missing entry."""
    if any(
        p in ("invalid_entry", "no_input", "login_failed", "login_locked", "system_busy") for p in prompts
    ):
        return False
    if "login_ok" not in prompts:
        return False
    rest = list(prompts[prompts.index("login_ok") + 1 :])
    if "quote_name" not in rest:
        return False
    q = rest[rest.index("quote_name") :]
    if q[1:3] != [f"stock_{code}", "quote_current_price"] or "word_yuan" not in q:
        return False
    price = q[3 : q.index("word_yuan")]
    return bool(price) and any(p in q for p in ("quote_up", "quote_down", "quote_flat"))


def switch_digits(log_text: str) -> tuple[int | None, str]:
    """(digits the switch recognised, where the figure comes from)."""
    per_call = CALL_DIGITS_LINE.findall(log_text)
    if per_call:
        return sum(int(n) for _, n in per_call), "per-call 'ivr <call_id> digits:' lines"
    return None, "not available"


# ---------------------------------------------------------------- the run


def run(a: argparse.Namespace) -> dict[str, Any]:
    schedule = key_schedule(a.listen, a.think)
    t_start = time.monotonic()
    keep = a.out is not None
    out = Path(a.out).resolve() if keep else Path(tempfile.mkdtemp(prefix="bench-ivr-"))
    if keep and out.exists() and any(out.iterdir()):
        raise SystemExit(
            f"--out {out}: not empty (the switch log and SIPp files of another run would mix in)"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "uac").mkdir(exist_ok=True)
    digits_per_call, pcap_s = make_dtmf_pcap(out / "uac" / "media.pcap", schedule)
    call_s = pcap_s + 0.5
    hard_deadline = t_start + a.duration + call_s + 60
    calls = max(1, round(a.cps * a.duration))
    limit = a.limit or max(10, int(2 * a.cps * (call_s + 2)))
    callers = make_users(a.callers, first=1001)
    result: dict[str, Any] = {
        "cps": a.cps, "duration_s": a.duration, "listen_s": a.listen, "think_s": a.think, "lang": a.lang, "callers": a.callers,
        "offered_calls": calls, "call_s": round(call_s, 1), "digits_per_call": digits_per_call,
        "expected_concurrency": round(a.cps * min(call_s + 0.5, a.duration)), "sipp_limit": limit,
        "source": source_fingerprint(), "cpus": os.cpu_count(),
    }  # fmt: skip
    switch: Switch | None = None
    uac: Sipp | None = None
    try:
        rtp = free_port_range(max(200, int(2 * 1.3 * limit)))  # one leg per call: RTP + RTCP
        extra = f'[switch]\nlanguage = "{a.lang}"\n' if a.lang != "zh" else ""
        switch = Switch(out / "switch", callers, transports=("udp",), log_level="info", rtp_ports=rtp,
                        extra_toml=HOTLINE_TOML)  # fmt: skip
        if extra:  # [switch] is the config's first table: set the language there
            text = switch.config_path.read_text().replace("[switch]\n", extra, 1)
            switch.config_path.write_text(text)
        switch.cli("broker", "seed")
        switch.start(timeout=20.0)
        result["target"] = switch.target
        result["rtp_ports"] = list(rtp)
        write_injection(out / "uac" / "users.csv", callers)
        uac_port, uac_media = _port_outside(*rtp), _port_outside(*rtp, even=True)
        sipp_timeout = int(a.duration + call_s + 30)
        uac = Sipp("uac", [
            "sipp", switch.target, "-sf", str(UAC_XML), *SIPP_COMMON, "-s", HOTLINE, "-inf", "users.csv",
            "-i", LOOPBACK, "-p", str(uac_port), "-mi", LOOPBACK, "-mp", str(uac_media),
            "-m", str(calls), "-r", f"{a.cps:g}", "-l", str(limit), "-d", str(int(call_s * 1000)),
            "-trace_stat", "-stf", "stat.csv", "-trace_err", "-error_file", "errors.log",
            "-trace_rtt", "-rtt_freq", "1", "-timeout", f"{sipp_timeout}s", "-timeout_error",
        ], out / "uac")  # fmt: skip
        result["uac_command"] = " ".join(uac.cmd)
        sampler = Sampler(switch.pid, {})
        sampler.ports = {"switch_rtp": rtp, "switch_sip": (switch.port, switch.port),
                         "uac_sip": (uac_port, uac_port), "uac_rtp": (uac_media, uac_media + 3)}  # fmt: skip
        udp0 = _udp_counters()
        uac.start()
        sampler.sipp_pids["uac"] = uac.pid
        t0 = time.monotonic()
        while uac.proc is not None and uac.proc.poll() is None and time.monotonic() < hard_deadline - 20:
            sampler.sample()
            time.sleep(1.0)
        rc, killed = uac.wait(timeout=hard_deadline - 20 - time.monotonic())
        t_end = time.monotonic()
        udp1 = _udp_counters()
        res = sipp_result(rc, out / "uac", t_end - t0, killed)
        rows = stat_rows(out / "uac" / "stat.csv")
        peak = max((_int(r.get("CurrentCall", r.get("CurrentCall(P)"))) for r in rows), default=0)
        created = res.count("TotalCallCreated")
        window = next((_elapsed_s(r.get("ElapsedTime(C)")) for r in rows
                       if _int(r.get("TotalCallCreated", r.get("TotalCallCreated(C)"))) >= created), 0.0)  # fmt: skip
        setup = res.rtt.get("setup", [])
        # steady state: while the number of calls up is at its plateau
        lo, hi = min(call_s, a.duration), max(call_s, a.duration)
        steady = sampler.steady(t0 + lo + 1, t0 + hi) if hi - lo >= 3 else {}
        result.update(
            sipp_rc=rc, sipp_killed=killed, created=created, successful=res.successful, failed=res.failed,
            failures_by_reason=res.failures_by_reason, retransmissions=res.count("Retransmissions"),
            creation_window_s=round(window, 1), achieved_cps=round(created / window, 2) if window else None,
            peak_concurrent=peak, elapsed_s=round(t_end - t0, 1), steady=steady,
            setup_ms={"n": len(setup), "p50": percentile(setup, 50), "p99": percentile(setup, 99),
                      "max": max(setup) if setup else None},
            sipp_cpu_pct={k: round(100 * v / (t_end - t0), 1) for k, v in sampler.last_cpu.items()},
            udp_rcvbuf_errors=udp1.get("RcvbufErrors", 0) - udp0.get("RcvbufErrors", 0),
            socket_drops=sampler.drops_by_owner(),
        )  # fmt: skip
        if res.failed or rc != 0:
            result["sipp_errors_head"] = res.errors(1500)
        _switch_checks(switch, result, sampler)
        return result
    finally:
        if uac is not None and uac.proc is not None and uac.proc.poll() is None:
            os.killpg(uac.proc.pid, signal.SIGKILL)
            uac.proc.wait(timeout=5)
        if switch is not None:
            switch.stop()
        if not keep:
            shutil.rmtree(out, ignore_errors=True)


def _switch_checks(switch: Switch, result: dict[str, Any], sampler: Sampler) -> None:
    """Flows completed and digits recognised (from the switch's log), CPU, RSS, problems in the log."""
    rows = [r for r in sampler.rows if "switch_cpu" in r]
    if len(rows) >= 2:
        result["switch_cpu_pct_run"] = round(
            100 * (rows[-1]["switch_cpu"] - rows[0]["switch_cpu"]) / (rows[-1]["t"] - rows[0]["t"]), 1
        )
    rss = [r["switch_rss_kib"] for r in rows if "switch_rss_kib" in r]
    if rss:
        result["switch_rss_mib"] = {"start": round(rss[0] / 1024, 1), "peak": round(max(rss) / 1024, 1)}
    # the prompts line is logged when the IVR ends (the caller's BYE): wait for the last ones
    deadline = time.monotonic() + 5
    while len(PROMPTS_LINE.findall(switch.log())) < result["created"] and time.monotonic() < deadline:
        time.sleep(0.2)
    result["switch_exit"] = switch.stop()  # flushes the digit counter's last line
    log = switch.log()
    ivr = {cid: prompts.strip().split(",") for cid, prompts in PROMPTS_LINE.findall(log)}
    completed = sum(1 for p in ivr.values() if flow_completed(p))
    reasons = Counter(
        next(
            (x for x in ("login_failed", "invalid_entry", "no_input", "system_busy") if x in p), "incomplete"
        )
        for p in ivr.values()
        if not flow_completed(p)
    )
    digits, source = switch_digits(log)
    sent = digits_sent = result["digits_per_call"] * len(ivr)
    result.update(
        ivr_calls=len(ivr), flows_completed=completed, flows_not_completed=dict(reasons),
        # calls that both succeeded in SIPp and completed the flow: at least this many (exact when either is all)
        success_ratio=round(max(0, completed + result["successful"] - result["offered_calls"])
                            / result["offered_calls"], 4),
        digits_recognised=digits, digits_sent=sent, digits_source=source,
        digit_ratio=round(digits / digits_sent, 4) if digits is not None and digits_sent else None,
    )  # fmt: skip
    result["switch_tracebacks"] = switch.tracebacks()[:3]
    bad = [line for line in log.splitlines() if re.search(r"\b(ERROR|CRITICAL)\b", line)]
    warnings = [line for line in log.splitlines() if " WARNING " in line and "bench-ivr digits" not in line]
    result["switch_log_problems"] = {
        "errors": len(bad),
        "warnings": len(warnings),
        "head": (bad + warnings)[:8],
    }


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def _fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def report(r: dict[str, Any]) -> str:
    s = r.get("steady", {})
    setup = r["setup_ms"]
    lines = [
        f"IVR bench -> {r['target']}: {r['cps']:g} cps x {r['duration_s']:g} s, login + quote ({r['lang']}),"
        f" {r['call_s']:g} s calls, {r['callers']} callers (softswitch sources {r['source']})",
        f"  offered    {r['cps']:g} cps, {r['offered_calls']} calls, ~{r['expected_concurrency']} concurrent",
        f"  achieved   {r['achieved_cps']} cps ({r['created']} created in {r['creation_window_s']} s),"
        f" peak concurrent {r['peak_concurrent']} (SIPp CurrentCall)",
        f"  SIPp       {r['successful']} successful, {r['failed']} failed {r['failures_by_reason'] or ''}"
        f" retransmissions={r['retransmissions']} rc={r['sipp_rc']}{' (killed)' if r['sipp_killed'] else ''}",
        f"  flows      {r['flows_completed']} of {r['ivr_calls']} IVR calls completed login + quote"
        f" {r['flows_not_completed'] or ''}; success ratio {r['success_ratio']:.1%} of offered",
        f"  DTMF       {r['digits_recognised']} digits recognised / {r['digits_sent']} sent"
        f" ({_fmt_ratio(r['digit_ratio'])}; {r['digits_source']})",
        f"  setup      first INVITE -> 200: p50 {_fmt_ms(setup['p50'])} p99 {_fmt_ms(setup['p99'])}"
        f" max {_fmt_ms(setup['max'])} (n={setup['n']})",
        f"  CPU        machine {s.get('machine_cpu_pct', '-')}% of {r['cpus']} CPUs (steady state);"
        f" switch {s.get('switch_cpu_pct', '-')}% of one core steady ({r.get('switch_cpu_pct_run', '-')}% whole"
        f" run); SIPp {r['sipp_cpu_pct']}",
        f"  UDP        receive-buffer drops by socket owner {r['socket_drops']} (uac_rtp: SIPp never reads"
        f" the prompts sent to it), RcvbufErrors {r['udp_rcvbuf_errors']}",
        f"  switch     RSS {r.get('switch_rss_mib')} MiB, exit {r['switch_exit']}",
    ]
    lp = r["switch_log_problems"]
    if lp["errors"] or lp["warnings"]:
        lines.append(f"  switch log: {lp['errors']} ERROR, {lp['warnings']} WARNING lines, first:\n    "
                     + "\n    ".join(lp["head"]))  # fmt: skip
    if r["switch_tracebacks"]:
        lines.append("  switch tracebacks:\n" + "\n".join(r["switch_tracebacks"]))
    if r.get("sipp_errors_head"):
        lines.append("  SIPp errors (head):\n" + r["sipp_errors_head"])
    return "\n".join(lines)


def passed(r: dict[str, Any]) -> bool:
    """Every offered call succeeded and completed its flow, every digit was recognised, no traceback."""
    return (
        r["sipp_rc"] == 0
        and r["successful"] == r["offered_calls"]
        and r["flows_completed"] == r["offered_calls"]
        and r["digits_recognised"] == r["digits_sent"]
        and not r["switch_tracebacks"]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    a = _parse_args(args)
    if shutil.which("sipp") is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    r = run(a)
    print(json.dumps(r, indent=1) if a.json else report(r))
    return 0 if passed(r) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
