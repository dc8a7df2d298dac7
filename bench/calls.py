"""Call bench: SIPp callers -> the switch (digest auth, B2BUA, anchored media) -> a SIPp callee.

    python -m bench.calls [--cps 20] [--duration 30] [--hold 10] [--record] [--callers 100]
                          [--target HOST:PORT] [--json] [--out DIR]

Without ``--target`` it starts a switch on free loopback ports: a temp config with callers 1001..
(password ``pw<user>``) and extension 2000 in an accounts CSV, the route ``^[0-9]{4}$ -> extension``,
an RTP port range sized for the load, ``[recording] enabled`` with ``--record``, logging at warning.
Extension 2000's contact is registered (digest REGISTER from Python) to a SIPp UAS that answers at
once (100, 180, 200) and echoes RTP (``-rtp_echo``). A SIPp UAC then places ``cps * duration`` calls
at ``--cps`` (callers cycled from the injection file): INVITE -> 407 -> INVITE with credentials ->
200, ACK, plays a G.711 pcap as long as the hold, BYE after ``--hold`` s. With ``--target`` the switch
there must route 2000 to a registered contact and hold the same accounts; this bench registers 2000
itself (password ``pw2000``) and cannot read that switch's CDRs or /proc.

Printed: CPS offered and achieved, peak concurrent calls (SIPp's CurrentCall), failures by reason,
setup latency (first INVITE -> 200 at the caller, SIPp rtd) p50/p99/max, the switch's CPU (% of
one core) and RSS, SIPp's CPU, loopback packets/s against the expected 4 x 50 per call, the CDR
count and dispositions against SIPp's, file descriptors before/after (leaks) and tracebacks or
ERROR lines in the switch's log. Whole run bounded by duration + hold + 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.register import source_fingerprint
from softswitch.codecs.g711 import ulaw_encode
from tests.peers import (
    LOOPBACK,
    Switch,
    free_port,
    free_port_range,
    make_users,
    percentile,
    proc_cpu_seconds,
    proc_rss_kib,
    register_contact,
    sipp_result,
    write_injection,
)
from tests.rtp_pcap import write_pcap

HERE = Path(__file__).resolve().parent
UAC_XML = HERE / "sipp" / "uac_call.xml"
UAS_XML = HERE / "sipp" / "uas_echo.xml"
CALLEE = ("2000", "pw2000")
# -timer_resol 1: SIPp's finest clock; 8 MiB socket buffers; retransmitted INVITE/BYE give up after
# SIPp's defaults (7 INVITE / 11 non-INVITE retransmissions, so a lost message shows as a retransmission).
SIPP_COMMON = ["-t", "u1", "-nostdin", "-timer_resol", "1", "-buff_size", str(8 << 20), "-fd", "1"]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.calls", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--cps", type=float, default=20.0, help="new calls per second (default 20)")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of new calls (default 30)")
    ap.add_argument("--hold", type=float, default=10.0, help="seconds from answer to BYE (default 10)")
    ap.add_argument("--record", action="store_true", help="[recording] enabled = true in the switch")
    ap.add_argument("--callers", type=int, default=100, help="caller accounts cycled by SIPp (default 100)")
    ap.add_argument("--target", help="HOST:PORT of a running switch (default: start one)")
    ap.add_argument("--limit", type=int, help="SIPp -l, max concurrent calls (default: 2 x cps x (hold + 2))")
    ap.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    ap.add_argument("--out", help="folder for config, logs, SIPp files (default: temp, removed)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    return ap.parse_args(argv)


# ---------------------------------------------------------------- media


def make_media_pcap(path: Path, seconds: float) -> int:
    """A G.711 u-law RTP pcap (20 ms packets, 440 + 1000 Hz at about -12 dBFS) of ``seconds``; returns packets."""
    n = max(1, math.ceil(seconds * 50))
    t = np.arange(160 * n) / 8000.0
    pcm = (3000 * np.sin(2 * np.pi * 440 * t) + 3000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    payload = ulaw_encode(pcm).tobytes()
    ssrc = 0x5EB0CA11
    packets = []
    for i in range(n):
        header = bytes([0x80, 0x80 if i == 0 else 0x00]) + (i & 0xFFFF).to_bytes(2, "big")
        header += (160 * i & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
        packets.append((1_700_000_000 + i * 0.02, header + payload[160 * i : 160 * (i + 1)]))
    write_pcap(path, packets)
    return n


# ---------------------------------------------------------------- /proc sampling


def _machine_cpu() -> tuple[float, float, float]:
    """(busy, softirq, total) jiffies of the whole machine (softirq: loopback packet delivery)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return float(sum(v) - idle), float(v[6]), float(sum(v))


def _lo_packets() -> int:
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[1])  # received packets (= sent, on loopback)
    return 0


def _udp_counters() -> dict[str, int]:
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], (int(x) for x in rows[1][1:]), strict=False))


def _udp_socket_drops() -> dict[tuple[int, str], tuple[int, int]]:
    """(local port, inode) -> (drops, rx queue bytes) of every UDP socket (``/proc/net/udp``)."""
    out: dict[tuple[int, str], tuple[int, int]] = {}
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            p = line.split()
            out[(int(p[1].rsplit(":", 1)[1], 16), p[9])] = (int(p[-1]), int(p[4].split(":")[1], 16))
    return out


def _fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        return proc_cpu_seconds(pid)
    except (OSError, IndexError):
        return None


@dataclass
class Sampler:
    """Per-second samples of the switch, the SIPp processes and the machine."""

    switch_pid: int | None
    sipp_pids: dict[str, int]
    ports: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> port range
    rows: list[dict[str, Any]] = field(default_factory=list)
    last_cpu: dict[str, float] = field(default_factory=dict)
    socket_drops: dict[tuple[int, str], int] = field(default_factory=dict)  # max seen per socket

    def drops_by_owner(self) -> dict[str, int]:
        """Receive-buffer drops summed over every socket seen, by the owner of its port."""
        out: dict[str, int] = {}
        for (port, _), n in self.socket_drops.items():
            owner = next((k for k, (lo, hi) in self.ports.items() if lo <= port <= hi), None)
            if owner is not None:
                out[owner] = out.get(owner, 0) + n
        return out

    def sample(self) -> None:
        busy, softirq, total = _machine_cpu()
        row: dict[str, Any] = {"t": time.monotonic(), "lo_pkts": _lo_packets(), "busy": busy, "softirq": softirq,
                               "total": total}  # fmt: skip
        cpu = _cpu(self.switch_pid)
        if cpu is not None and self.switch_pid is not None:
            row["switch_cpu"] = cpu
            with contextlib.suppress(OSError):
                row["switch_rss_kib"] = proc_rss_kib(self.switch_pid)[0]
        for name, pid in self.sipp_pids.items():
            c = _cpu(pid)
            if c is not None:
                self.last_cpu[name] = c  # a reaped process cannot be read: keep its last value
        for key, (drops, _) in _udp_socket_drops().items():
            if drops:
                self.socket_drops[key] = max(drops, self.socket_drops.get(key, 0))
        self.rows.append(row)

    def steady(self, t0: float, t1: float) -> dict[str, Any]:
        """Rates over the samples between t0 and t1 (the steady state of the run)."""
        rows = [r for r in self.rows if t0 <= r["t"] <= t1]
        if len(rows) < 2:
            return {}
        a, b = rows[0], rows[-1]
        dt = b["t"] - a["t"]
        out: dict[str, Any] = {
            "window_s": round(dt, 1),
            "lo_pkts_per_s": round((b["lo_pkts"] - a["lo_pkts"]) / dt),
            "machine_cpu_pct": round(100 * (b["busy"] - a["busy"]) / max(1.0, b["total"] - a["total"]), 1),
            "softirq_pct": round(100 * (b["softirq"] - a["softirq"]) / max(1.0, b["total"] - a["total"]), 1),
        }
        if "switch_cpu" in a and "switch_cpu" in b:
            out["switch_cpu_pct"] = round(100 * (b["switch_cpu"] - a["switch_cpu"]) / dt, 1)
        return out


# ---------------------------------------------------------------- SIPp


@dataclass
class Sipp:
    name: str
    cmd: list[str]
    out: Path
    proc: subprocess.Popen[bytes] | None = None
    t0: float = 0.0

    def start(self) -> Sipp:
        self.t0 = time.monotonic()
        with (self.out / "sipp.stdout").open("wb") as so:
            self.proc = subprocess.Popen(self.cmd, cwd=self.out, stdin=subprocess.DEVNULL, stdout=so,
                                         stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait(self, timeout: float) -> tuple[int, bool]:
        """(exit code, killed): waits up to ``timeout`` s, then SIGKILLs SIPp's process group."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=max(0.1, timeout)), False
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=5), True


def stat_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a SIPp -trace_stat file (periodic rows, cumulative (C) and periodic (P) columns)."""
    if not path.exists():
        return []
    lines = [line.rstrip(";\n").split(";") for line in path.read_text(errors="replace").splitlines() if line]
    return [dict(zip(lines[0], r, strict=False)) for r in lines[1:]] if lines else []


def _int(v: str | None) -> int:
    return int(v) if v and v.isdigit() else 0


def _elapsed_s(v: str | None) -> float:
    m = re.fullmatch(r"(\d+):(\d+):(\d+)(?::(\d+))?", v or "")
    if not m:
        return 0.0
    h, mi, s = (int(x) for x in m.groups()[:3])
    return h * 3600 + mi * 60 + s + int(m.group(4) or 0) / 1e6


def _port_outside(lo: int, hi: int, *, even: bool = False) -> int:
    for _ in range(100):
        p = free_port(even=even)
        if not lo - 2 <= p <= hi + 2:
            return p
    raise RuntimeError("no free port outside the RTP range")


# ---------------------------------------------------------------- the run


def run(a: argparse.Namespace) -> dict[str, Any]:
    t_start = time.monotonic()
    hard_deadline = t_start + a.duration + a.hold + 60
    keep = a.out is not None
    out = Path(a.out).resolve() if keep else Path(tempfile.mkdtemp(prefix="bench-calls-"))
    out.mkdir(parents=True, exist_ok=True)
    calls = max(1, round(a.cps * a.duration))
    expected_concurrency = a.cps * (a.hold + 0.5)  # SIPp also counts the 0.5 s timewait after the BYE
    limit = a.limit or max(10, int(2 * a.cps * (a.hold + 2)))
    callers = make_users(a.callers, first=1001)
    switch: Switch | None = None
    result: dict[str, Any] = {
        "cps": a.cps, "duration_s": a.duration, "hold_s": a.hold, "record": a.record, "callers": a.callers,
        "offered_calls": calls, "expected_concurrency": round(expected_concurrency), "sipp_limit": limit,
        "source": source_fingerprint(), "cpus": os.cpu_count(),
    }  # fmt: skip
    uas: Sipp | None = None
    uac: Sipp | None = None
    try:
        # each call holds two legs, each an RTP + RTCP port pair: 4 ports; 30 % headroom
        rtp = free_port_range(max(400, int(4 * 1.3 * limit)))
        if a.target:
            target = a.target
            port_s = target.rpartition(":")[2]
            sip_port = int(port_s)
        else:
            extra = ['[[routes]]', 'match = "^[0-9]{4}$"', 'to = "extension"', "", "[calls]",
                     "ring_timeout_s = 30"]  # fmt: skip
            if a.record:
                extra += ["", "[recording]", "enabled = true"]
            switch = Switch(out / "switch", [*callers, CALLEE], transports=("udp",), log_level=a.log_level,
                            rtp_ports=rtp, extra_toml="\n".join(extra))  # fmt: skip
            switch.start(timeout=20.0)
            target, sip_port = switch.target, switch.port
            result["rtp_ports"] = list(rtp)
        result["target"] = target
        uas_port = _port_outside(*rtp)
        status = register_contact(sip_port, *CALLEE, contact_port=uas_port, expires=3600)
        if status != 200:
            raise RuntimeError(f"REGISTER of {CALLEE[0]} to 127.0.0.1:{uas_port} got {status}")
        pcap_s = a.hold + 1
        for d in ("uas", "uac"):
            (out / d).mkdir(exist_ok=True)
        result["pcap_packets"] = make_media_pcap(out / "uac" / "media.pcap", pcap_s)
        sipp_timeout = int(a.duration + a.hold + 30)
        uas_media, uac_port, uac_media = (_port_outside(*rtp, even=True), _port_outside(*rtp),
                                          _port_outside(*rtp, even=True))  # fmt: skip
        uas = Sipp("uas", [
            "sipp", "-sf", str(UAS_XML), *SIPP_COMMON, "-i", LOOPBACK, "-p", str(uas_port),
            "-mi", LOOPBACK, "-mp", str(uas_media), "-rtp_echo", "-m", str(calls),
            "-trace_stat", "-stf", "stat.csv", "-trace_err", "-error_file", "errors.log",
            "-timeout", f"{sipp_timeout + 5}s", "-timeout_error",
        ], out / "uas").start()  # fmt: skip
        write_injection(out / "uac" / "users.csv", callers)
        uac = Sipp("uac", [
            "sipp", target, "-sf", str(UAC_XML), *SIPP_COMMON, "-s", CALLEE[0], "-inf", "users.csv",
            "-i", LOOPBACK, "-p", str(uac_port), "-mi", LOOPBACK, "-mp", str(uac_media),
            "-m", str(calls), "-r", f"{a.cps:g}", "-l", str(limit), "-d", str(int(a.hold * 1000)),
            "-trace_stat", "-stf", "stat.csv", "-trace_err", "-error_file", "errors.log",
            "-trace_rtt", "-rtt_freq", "1", "-timeout", f"{sipp_timeout}s", "-timeout_error",
        ], out / "uac")  # fmt: skip
        result["uac_command"] = " ".join(uac.cmd)
        result["uas_command"] = " ".join(uas.cmd)
        time.sleep(0.3)  # let the UAS bind before the first INVITE arrives
        sampler = Sampler(switch.pid if switch else None, {"uas": uas.pid})
        sampler.ports = {"switch_rtp": rtp, "switch_sip": (sip_port, sip_port), "uas_sip": (uas_port, uas_port),
                         "uas_rtp": (uas_media, uas_media + 3), "uac_sip": (uac_port, uac_port),
                         "uac_rtp": (uac_media, uac_media + 3)}  # fmt: skip
        fds_before = _fds(switch.pid) if switch else None
        udp0 = _udp_counters()
        uac.start()
        sampler.sipp_pids["uac"] = uac.pid
        t0 = time.monotonic()
        while uac.proc is not None and uac.proc.poll() is None and time.monotonic() < hard_deadline - 20:
            sampler.sample()
            time.sleep(1.0)
        rc, killed = uac.wait(timeout=hard_deadline - 20 - time.monotonic())
        t_end = time.monotonic()
        uas_rc, uas_killed = uas.wait(timeout=min(10.0, hard_deadline - 10 - time.monotonic()))
        udp1 = _udp_counters()
        # steady state: while the number of calls up is at its plateau
        # (the plateau runs from min(hold, duration) to max(hold, duration); when that is short, take
        # the samples near the peak instead)
        lo, hi = min(a.hold, a.duration), max(a.hold, a.duration)
        plateau = (lo + 2, hi) if hi - lo >= 5 else (0.8 * lo, hi + 0.2 * lo)
        steady = sampler.steady(t0 + plateau[0], t0 + plateau[1])
        res = sipp_result(rc, out / "uac", t_end - t0, killed)
        rows = stat_rows(out / "uac" / "stat.csv")
        peak = max((_int(r.get("CurrentCall", r.get("CurrentCall(P)"))) for r in rows), default=0)
        created = res.count("TotalCallCreated")
        # creation window: until the row where every call had been created
        window = next((_elapsed_s(r.get("ElapsedTime(C)")) for r in rows
                       if _int(r.get("TotalCallCreated", r.get("TotalCallCreated(C)"))) >= created), 0.0)  # fmt: skip
        setup = res.rtt.get("setup", [])
        uas_res = sipp_result(uas_rc, out / "uas", t_end - t0, uas_killed)
        result.update(
            sipp_rc=rc, sipp_killed=killed, created=created, successful=res.successful, failed=res.failed,
            failures_by_reason=res.failures_by_reason, retransmissions=res.count("Retransmissions"),
            dead_call_msgs=res.count("DeadCallMsgs"), out_of_call_msgs=res.count("OutOfCallMsgs"),
            creation_window_s=round(window, 1), achieved_cps=round(created / window, 1) if window else None,
            peak_concurrent=peak, elapsed_s=round(t_end - t0, 1),
            setup_ms={"n": len(setup), "p50": percentile(setup, 50), "p99": percentile(setup, 99),
                      "max": max(setup) if setup else None},
            uas={"rc": uas_rc, "killed": uas_killed, "successful": uas_res.successful,
                 "failed": uas_res.failed, "failures_by_reason": uas_res.failures_by_reason,
                 "retransmissions": uas_res.count("Retransmissions")},
            steady=steady,
            expected_lo_pkts_per_s=round(4 * 50 * a.cps * min(a.hold, a.duration)),
            udp_rcvbuf_errors=udp1.get("RcvbufErrors", 0) - udp0.get("RcvbufErrors", 0),
            socket_drops=sampler.drops_by_owner(),
            sipp_cpu_pct={k: round(100 * v / (t_end - t0), 1) for k, v in sampler.last_cpu.items()},
        )  # fmt: skip
        if res.failed or rc != 0:
            result["sipp_errors_head"] = res.errors(1500)
        if uas_res.failed:
            result["uas_errors_head"] = uas_res.errors(1000)
        if switch is not None:
            _switch_checks(switch, result, sampler, fds_before, hard_deadline)
        return result
    finally:
        for s in (uac, uas):
            if s is not None and s.proc is not None and s.proc.poll() is None:
                os.killpg(s.proc.pid, signal.SIGKILL)
                s.proc.wait(timeout=5)
        if switch is not None:
            switch.stop()
        if not keep:
            shutil.rmtree(out, ignore_errors=True)


def _switch_checks(
    switch: Switch, result: dict[str, Any], sampler: Sampler, fds_before: int | None, hard_deadline: float
) -> None:
    """CPU, RSS, CDRs against SIPp, fd leaks, the log: filled into ``result``."""
    rows = [r for r in sampler.rows if "switch_cpu" in r]
    if len(rows) >= 2:
        result["switch_cpu_pct_run"] = round(
            100 * (rows[-1]["switch_cpu"] - rows[0]["switch_cpu"]) / (rows[-1]["t"] - rows[0]["t"]), 1
        )
    rss = [r["switch_rss_kib"] for r in rows if "switch_rss_kib" in r]
    if rss:
        result["switch_rss_mib"] = {"start": round(rss[0] / 1024, 1), "peak": round(max(rss) / 1024, 1)}
    # CDRs: one per INVITE that got past authentication; wait until the count stops growing
    cdr: list[dict[str, str]] = []
    stable_since = time.monotonic()
    while time.monotonic() < min(hard_deadline - 8, stable_since + 3):
        now = switch.cdr()
        if len(now) != len(cdr):
            stable_since = time.monotonic()
        cdr = now
        if len(cdr) >= result["created"]:
            break
        time.sleep(0.5)
    result["cdr_count"] = len(cdr)
    result["cdr_matches"] = len(cdr) == result["created"]
    result["cdr_dispositions"] = dict(Counter(r.get("disposition", "?") for r in cdr))
    result["cdr_hangup_side"] = dict(Counter(r.get("hangup_side", "?") for r in cdr))
    durations = [float(r["duration"]) for r in cdr if r.get("duration")]
    if durations:
        result["cdr_duration_s"] = {"min": round(min(durations), 2), "max": round(max(durations), 2)}
    recordings = [r["recording_path"] for r in cdr if r.get("recording_path")]
    if recordings:
        sizes = []
        for p in recordings:
            path = Path(p) if os.path.isabs(p) else switch.data_dir / p
            sizes.append(path.stat().st_size if path.exists() else -1)
        result["recordings"] = {"count": len(recordings), "missing": sum(1 for s in sizes if s < 0),
                                "bytes_p50": percentile([s for s in sizes if s >= 0], 50)}  # fmt: skip
    time.sleep(1.0)
    fds_after = _fds(switch.pid)
    result["switch_fds"] = {"before": fds_before, "after": fds_after}
    with contextlib.suppress(OSError, KeyError):
        result["switch_rss_mib"]["end"] = round(proc_rss_kib(switch.pid)[0] / 1024, 1)
    result["switch_exit"] = switch.stop()
    log = switch.log()
    result["switch_tracebacks"] = switch.tracebacks()[:3]
    bad = [line for line in log.splitlines() if re.search(r"\b(ERROR|CRITICAL|WARNING)\b", line)]
    result["switch_log_problems"] = {"count": len(bad), "head": bad[:8]}


def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"


def report(r: dict[str, Any]) -> str:
    s = r.get("steady", {})
    lines = [
        f"call bench -> {r['target']}: {r['cps']:g} cps x {r['duration_s']:g} s, hold {r['hold_s']:g} s,"
        f" record={'on' if r['record'] else 'off'}, {r['callers']} callers (softswitch sources {r['source']})",
        f"  offered   {r['cps']:g} cps, {r['offered_calls']} calls, ~{r['expected_concurrency']} concurrent",
        f"  achieved  {r['achieved_cps']} cps ({r['created']} created in {r['creation_window_s']} s),"
        f" {r['successful']} successful, peak concurrent {r['peak_concurrent']} (SIPp CurrentCall)",
        f"  failures  {r['failed']} {r['failures_by_reason'] or ''} retransmissions={r['retransmissions']}"
        f" dead_call_msgs={r['dead_call_msgs']} sipp_rc={r['sipp_rc']}{' (killed)' if r['sipp_killed'] else ''};"
        f" callee UAS: {r['uas']['successful']} ok, {r['uas']['failed']} failed {r['uas']['failures_by_reason'] or ''}",
        f"  setup     first INVITE -> 200 at the caller: p50 {_fmt_ms(r['setup_ms']['p50'])}"
        f" p99 {_fmt_ms(r['setup_ms']['p99'])} max {_fmt_ms(r['setup_ms']['max'])} (n={r['setup_ms']['n']})",
        f"  media     loopback {s.get('lo_pkts_per_s', '-')} pkts/s in steady state"
        f" (expected ~{r['expected_lo_pkts_per_s']} RTP + SIP), UDP RcvbufErrors {r['udp_rcvbuf_errors']}"
        f" (SIPp's UAC never reads the RTP echoed to it: uac_rtp drops are expected); socket drops by"
        f" owner {r.get('socket_drops')}",
        f"  CPU       machine {s.get('machine_cpu_pct', '-')}% of {r['cpus']} CPUs busy (steady state;"
        f" {s.get('softirq_pct', '-')}% in softirq, i.e. loopback delivery);"
        f" SIPp {r['sipp_cpu_pct']} (% of one core, whole run)",
    ]
    if "switch_cpu_pct_run" in r:
        rss = r.get("switch_rss_mib", {})
        lines.append(
            f"  switch    CPU {s.get('switch_cpu_pct', '-')}% of one core steady ({r['switch_cpu_pct_run']}% whole run),"
            f" RSS {rss.get('start')} -> peak {rss.get('peak')} -> end {rss.get('end')} MiB,"
            f" fds {r['switch_fds']['before']} -> {r['switch_fds']['after']} after the calls, exit {r['switch_exit']}"
        )
        lines.append(
            f"  CDR       {r['cdr_count']} rows for {r['created']} calls: {'match' if r['cdr_matches'] else 'MISMATCH'};"
            f" {r['cdr_dispositions']} hangup {r['cdr_hangup_side']} duration {r.get('cdr_duration_s')}"
        )
        if "recordings" in r:
            lines.append(f"  records   {r['recordings']}")
        lp = r["switch_log_problems"]
        if lp["count"]:
            lines.append(
                f"  switch log: {lp['count']} WARNING/ERROR lines, first:\n    " + "\n    ".join(lp["head"])
            )
        if r["switch_tracebacks"]:
            lines.append("  switch tracebacks:\n" + "\n".join(r["switch_tracebacks"]))
    if r.get("sipp_errors_head"):
        lines.append("  SIPp UAC errors (head):\n" + r["sipp_errors_head"])
    if r.get("uas_errors_head"):
        lines.append("  SIPp UAS errors (head):\n" + r["uas_errors_head"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    a = _parse_args(argv)
    if shutil.which("sipp") is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    r = run(a)
    print(json.dumps(r, indent=1) if a.json else report(r))
    ok = r["failed"] == 0 and r["sipp_rc"] == 0 and r["successful"] == r["offered_calls"]
    ok = ok and r.get("cdr_matches", True) and not r.get("switch_tracebacks")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
