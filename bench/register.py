"""REGISTER throughput bench: SIPp registers users with digest auth at a fixed rate.

    python -m bench.register [--duration 30] [--rate 2000] [--users 2000] [--transport udp|tcp]
                             [--target HOST:PORT] [--limit N] [--expires 3600] [--json]
                             [--profile FILE.prof] [--out DIR]

Without ``--target`` it starts a switch (temp config, ``--users`` accounts 1001.. with password
``pw<user>`` in a CSV, temp data dir, logging at warning) on free loopback ports; with ``--target``
the switch there must hold the same accounts. SIPp places ``rate * duration`` REGISTER "calls"
(401 challenge, then the authenticated REGISTER -> 200) cycling through the users, so most are
refreshes of existing bindings. Prints the offered and achieved rate, failures, latency of the
authenticated REGISTER -> 200, and the switch's CPU and RSS. Whole run bounded by duration + 30 s.
``--profile`` runs the switch under cProfile and prints the top 25 functions by tottime.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.peers import (
    Switch,
    make_users,
    percentile,
    proc_cpu_seconds,
    proc_rss_kib,
    register_scenario,
    run_sipp,
)

# -nd: an aborted exchange just ends (no BYE); -timer_resol 1: SIPp's finest clock (its samples are whole ms,
# ~4 ms ticks here); -max_non_invite_retrans 3: a REGISTER left unanswered for 3.5 s counts as failed.
SIPP_EXTRA = ["-nd", "-timer_resol", "1", "-buff_size", str(8 << 20), "-max_non_invite_retrans", "3"]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.register", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of offered load (default 30)")
    ap.add_argument("--rate", type=int, default=2000, help="new REGISTER exchanges per second (default 2000)")
    ap.add_argument("--users", type=int, default=2000, help="accounts, cycled by SIPp (default 2000)")
    ap.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    ap.add_argument("--target", help="HOST:PORT of a running switch (default: start one)")
    ap.add_argument("--limit", type=int, help="max concurrent exchanges in SIPp (default: 2 * rate)")
    ap.add_argument("--expires", type=int, default=3600, help="Expires of the REGISTERs (default 3600)")
    ap.add_argument("--profile", help="run the started switch under cProfile, writing this file")
    ap.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    ap.add_argument("--out", help="folder for config, logs and SIPp files (default: temp, removed)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    return ap.parse_args(argv)


def source_fingerprint() -> str:
    """Short hash of the switch's sources, to tell bench runs of different code apart."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent / "softswitch"
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def run(a: argparse.Namespace) -> dict[str, Any]:
    hard_deadline = time.monotonic() + a.duration + 30
    keep = a.out is not None
    out = Path(a.out) if keep else Path(tempfile.mkdtemp(prefix="bench-register-"))
    out.mkdir(parents=True, exist_ok=True)
    users = make_users(a.users)
    switch: Switch | None = None
    calls = max(1, round(a.rate * a.duration))
    try:
        if a.target:
            target = a.target
        else:
            python = [sys.executable]
            if a.profile:
                python += ["-m", "cProfile", "-o", str(Path(a.profile).resolve())]
            switch = Switch(
                out / "switch", users, transports=("udp", "tcp"), log_level=a.log_level, python=python
            )
            switch.start(timeout=min(20.0, a.duration + 20))
            target = switch.target
        cpu0 = proc_cpu_seconds(switch.pid) if switch else 0.0
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        budget = max(
            5.0, hard_deadline - time.monotonic() - 10
        )  # run_sipp kills SIPp 10 s after its own timeout
        res = run_sipp(
            target, register_scenario(), users, out / "sipp",
            calls=calls, rate=a.rate, transport=a.transport, limit=a.limit or 2 * a.rate,
            expires=a.expires, timeout=min(a.duration + 20, budget),
            rtt_freq=200, extra=SIPP_EXTRA,
        )  # fmt: skip
        wall = time.monotonic() - t0
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # SIPp is the only child reaped meanwhile
        sipp_cpu = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
        result: dict[str, Any] = {
            "transport": a.transport, "target": target, "users": a.users, "duration_s": a.duration,
            "offered_rate": a.rate, "offered_calls": calls, "source": source_fingerprint(),
            "cpus": os.cpu_count(), "sipp_cpu_pct": round(100 * sipp_cpu / wall, 1),
        }  # fmt: skip
        if switch is not None:
            cpu = proc_cpu_seconds(switch.pid) - cpu0
            rss, hwm = proc_rss_kib(switch.pid)
            result.update(
                switch_cpu_pct=round(100 * cpu / wall, 1), switch_cpu_s=round(cpu, 2),
                switch_rss_mib=round(rss / 1024, 1), switch_peak_rss_mib=round(hwm / 1024, 1),
            )  # fmt: skip
        elapsed = res.elapsed_s or wall
        auth = res.rtt.get("auth", [])
        challenge = res.rtt.get("challenge", [])
        result.update(
            sipp_rc=res.rc, sipp_timed_out=res.timed_out, created=res.count("TotalCallCreated"),
            successful=res.successful, failed=res.failed, failures_by_reason=res.failures_by_reason,
            retransmissions=res.count("Retransmissions"), dead_call_msgs=res.count("DeadCallMsgs"),
            out_of_call_msgs=res.count("OutOfCallMsgs"),
            elapsed_s=round(elapsed, 2), achieved_rate=round(res.successful / elapsed, 1) if elapsed else 0.0,
            auth_latency_ms={"n": len(auth), "p50": percentile(auth, 50), "p99": percentile(auth, 99),
                             "max": max(auth) if auth else None},
            challenge_latency_ms={"n": len(challenge), "p50": percentile(challenge, 50),
                                  "p99": percentile(challenge, 99)},
        )  # fmt: skip
        if res.failed or res.rc != 0:
            result["sipp_errors_head"] = res.errors(1500)
        if switch is not None:
            rc = switch.stop()
            result["switch_exit"] = rc
            tracebacks = switch.tracebacks()
            if tracebacks:
                result["switch_tracebacks"] = tracebacks[:3]
            if a.profile:
                result["profile"] = str(Path(a.profile).resolve())
        return result
    finally:
        if switch is not None:
            switch.stop()
        if not keep:
            shutil.rmtree(out, ignore_errors=True)


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def report(r: dict[str, Any]) -> str:
    lines = [
        f"REGISTER bench over {r['transport']} -> {r['target']}: {r['users']} users, {r['duration_s']:g} s"
        f" (softswitch sources {r['source']})",
        f"  offered   {r['offered_rate']} /s ({r['offered_calls']} exchanges)",
        f"  achieved  {r['achieved_rate']} REGISTER/s ({r['successful']} successful in {r['elapsed_s']} s)",
        f"  failures  {r['failed']} {r['failures_by_reason'] or ''} retransmissions={r['retransmissions']}"
        f" sipp_rc={r['sipp_rc']}{' (timed out)' if r['sipp_timed_out'] else ''}",
        f"  latency   authenticated REGISTER -> 200: p50 {_fmt_ms(r['auth_latency_ms']['p50'])}"
        f" p99 {_fmt_ms(r['auth_latency_ms']['p99'])} max {_fmt_ms(r['auth_latency_ms']['max'])}"
        f" (n={r['auth_latency_ms']['n']}); challenge p50 {_fmt_ms(r['challenge_latency_ms']['p50'])}"
        f" p99 {_fmt_ms(r['challenge_latency_ms']['p99'])}",
    ]
    lines.append(f"  SIPp      CPU {r['sipp_cpu_pct']}% of one core ({r['cpus']} CPUs on this machine)")
    if "switch_cpu_pct" in r:
        lines.append(
            f"  switch    CPU {r['switch_cpu_pct']}% of one core ({r['switch_cpu_s']} s),"
            f" RSS {r['switch_rss_mib']} MiB"
            f" (peak {r['switch_peak_rss_mib']} MiB), exit {r.get('switch_exit')}"
        )
    if r.get("switch_tracebacks"):
        lines.append("  switch logged tracebacks:\n" + "\n".join(r["switch_tracebacks"]))
    if r.get("sipp_errors_head"):
        lines.append("  SIPp errors (head):\n" + r["sipp_errors_head"])
    return "\n".join(lines)


def print_profile(path: str, top: int = 25) -> None:
    stats = pstats.Stats(path, stream=sys.stdout)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    a = _parse_args(argv)
    if shutil.which("sipp") is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    r = run(a)
    print(json.dumps(r, indent=1) if a.json else report(r))
    if a.profile and os.path.exists(a.profile) and not a.json:
        print_profile(a.profile)
    ok = r["failed"] == 0 and r["sipp_rc"] == 0 and r["successful"] == r["offered_calls"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
