"""The trading day bench: a window of a brokerage hotline's day, or a CPS ramp, against the real switch.

    python -m bench day --calls-per-day 300000 [--news-day 4] --window 10:00-10:15 [--duration 300]
    python -m bench ramp [--start 5 --step 5 --step-duration 60 --max 200]

The day: ``bench/profiles/day_curve.csv`` (fraction of the day's calls per quarter hour) and
``bench/profiles/call_mix.toml`` (flows, their weights, DTMF scripts and hold times). ``day`` computes
the window's CPS (calls per day x news-day factor x the window's fraction / its seconds) and expected
concurrent calls (Little's law: CPS x the mix's mean hold time), prints them, then plays the window at
that rate for ``--duration`` seconds (default: the whole window) and waits for the calls to end.

Load: SIPp (``bench/sipp/uac_day.xml``) does the callers' signalling only (INVITE with digest, ACK,
hold for the flow's hold time, BYE); each call's SDP points at the media generator
(``bench/loadgen.py``: one process, one socket per flow, recvmmsg/sendmmsg) which plays the flow's
script (G.711 + RFC 4733) from the call's first packet and measures the switch's send pacing. Agents:
one SIPp UAS (``bench/sipp/uas_agent_day.xml``, ``-rtp_echo``) registered as every agent account
and logged in on the switch's control socket.

Without ``--target`` the bench starts the switch: callers 1001.., agents 2001.. in an accounts CSV,
the hotline IVR (95565: 1 quote, 2 balance, 3 order, 4 positions, 0 queue:a_shares), the SimBroker
seeded plus the bench's account, the a_shares queue, N agents, logging at info. ``--media-workers``
and ``--rtp-mode`` are passed through (``softswitch run --media-workers N``; ``[media] rtp_mode``).
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
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from bench.calls import SIPP_COMMON, _machine_cpu, _port_outside, stat_rows
from bench.loadgen import lateness_ms, make_plan, pacing_summary
from bench.register import source_fingerprint
from tests.peers import LOOPBACK, REPO, Switch, free_port, free_port_range, percentile, proc_cpu_seconds

HERE = Path(__file__).resolve().parent
PROFILES = HERE / "profiles"
CURVE = PROFILES / "day_curve.csv"
MIX = PROFILES / "call_mix.toml"
UAC_XML = HERE / "sipp" / "uac_day.xml"
AGENT_XML = HERE / "sipp" / "uas_agent_day.xml"
HOTLINE = "95565"
QUEUE = "a_shares"
BAD_PROMPTS = ("invalid_entry", "no_input", "login_failed", "login_locked", "system_busy", "order_rejected",
               "quote_unknown_code")  # fmt: skip
PROMPTS_LINE = re.compile(r"ivr (\S+) prompts: (.*)")
DIGITS_LINE = re.compile(r"ivr (\S+) digits: (\d+)")
SIPP_LOG = re.compile(r"(answered|ended) call=(\S+)(?: flow=(\S+))? at=(\d+)(?:\.0+)?\.(\d+)")
SIPP_ERR = re.compile(r"(?:for call:|Call-I[dD]:?) '?([^'\s]+@[0-9.]+?)'?(?:\s|$)")
SIPP_ERR_STAMP = re.compile(r"\d{4}-\d\d-\d\d\t\d\d:\d\d:\d\d\.\d+\t(\d+\.\d+): ")
THRESHOLDS = {"success": 0.999, "setup_p99_ms": 500.0, "pacing_p99_ms": 10.0}


# ---------------------------------------------------------------- the day and the mix


@dataclass(frozen=True)
class Flow:
    name: str
    weight: float
    hold_s: float
    script: tuple[tuple[float, str], ...]
    expect: tuple[str, ...]
    queue: bool = False

    @property
    def digits(self) -> int:
        return make_plan(self.script).digits


@dataclass(frozen=True)
class Mix:
    flows: tuple[Flow, ...]
    account: str
    pin: str

    @property
    def mean_hold_s(self) -> float:
        total = sum(f.weight for f in self.flows)
        return sum(f.weight * f.hold_s for f in self.flows) / total

    def share(self, f: Flow) -> float:
        return f.weight / sum(x.weight for x in self.flows)


def load_curve(path: Path = CURVE) -> list[float]:
    """The 96 quarter-hour fractions of the day (as read; see :func:`window_fraction`)."""
    out: list[float] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("start"):
            continue
        start, frac = line.split(",")[:2]
        h, m = (int(x) for x in start.split(":"))
        if h * 4 + m // 15 != len(out):
            raise ValueError(f"{path}: expected quarter {len(out)} in order, got {start}")
        out.append(float(frac))
    if len(out) != 96:
        raise ValueError(f"{path}: expected 96 quarter hours, got {len(out)}")
    return out


def load_mix(path: Path = MIX) -> Mix:
    raw = tomllib.loads(path.read_text())
    caller = raw.get("caller", {})
    account, pin = str(caller.get("account", "20000001")), str(caller.get("pin", "246810"))
    flows = []
    for name, f in raw["flows"].items():
        script = tuple((float(at), str(keys).format(account=account, pin=pin)) for at, keys in f["script"])
        flows.append(Flow(name, float(f["weight"]), float(f["hold_s"]), script, tuple(f.get("expect", ())),
                          bool(f.get("queue", False))))  # fmt: skip
        make_plan(script)  # overlapping keys are an error in the file
    return Mix(tuple(flows), account, pin)


def _minutes(hhmm: str) -> int:
    h, m = hhmm.strip().split(":")
    return int(h) * 60 + int(m)


def window_fraction(curve: Sequence[float], window: str) -> tuple[float, float]:
    """(fraction of the day's calls, seconds) of a window ``HH:MM-HH:MM`` (partial quarters pro rata)."""
    a, b = (_minutes(x) for x in window.split("-"))
    if not 0 <= a < b <= 24 * 60:
        raise ValueError(f"bad window {window!r}")
    total = sum(curve)
    frac = 0.0
    for q, f in enumerate(curve):
        lo, hi = q * 15, q * 15 + 15
        overlap = max(0, min(b, hi) - max(a, lo))
        frac += f / total * overlap / 15
    return frac, (b - a) * 60.0


def window_load(
    calls_per_day: float, news: float, curve: Sequence[float], window: str, mix: Mix
) -> dict[str, Any]:
    """The window's calls, CPS and expected concurrency (Little's law with the mix's hold times)."""
    frac, seconds = window_fraction(curve, window)
    calls = calls_per_day * news * frac
    cps = calls / seconds
    return {
        "window": window, "calls_per_day": calls_per_day, "news_day": news, "curve_sum": round(sum(curve), 6),
        "window_fraction": round(frac, 6), "window_s": seconds, "window_calls": round(calls),
        "cps": round(cps, 3), "mean_hold_s": round(mix.mean_hold_s, 1),
        "expected_concurrent": round(cps * mix.mean_hold_s),
        "hold_s": {f.name: f.hold_s for f in mix.flows}, "mix": {f.name: round(mix.share(f), 4) for f in mix.flows},
    }  # fmt: skip


def interleave(weights: Sequence[float], n: int) -> list[int]:
    """n flow indices in a smooth weighted round robin (any prefix follows the weights closely)."""
    total = sum(weights)
    current = [0.0] * len(weights)
    out = []
    for _ in range(n):
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(weights)), key=lambda i: current[i])
        current[best] -= total
        out.append(best)
    return out


def flow_completed(prompts: Sequence[str], flow: Flow, connected: bool = False) -> bool:
    """The flow's expected prompts in order, no error prompt before the last one; queue flows: answered."""
    pos = 0
    for want in flow.expect:
        try:
            pos = prompts.index(want, pos) + 1
        except ValueError:
            return False
    if any(p in BAD_PROMPTS for p in prompts[:pos]):
        return False
    return connected if flow.queue else True


# ---------------------------------------------------------------- /proc


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                continue
    return out


def tree_cpu(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of a process and its children (media workers)."""
    cpu = rss = 0.0
    for p in [pid, *_children(pid)]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            cpu += proc_cpu_seconds(p)
            with open(f"/proc/{p}/status") as f:
                rss += next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024
    return cpu, rss


# ---------------------------------------------------------------- the rig


class Rig:
    """Generator, switch, agents and the SIPp callers of one run; :meth:`close` ends all of it."""

    def __init__(
        self, a: argparse.Namespace, mix: Mix, out: Path, rate: float, calls: int, limit: int
    ) -> None:
        self.a, self.mix, self.out = a, mix, out
        self.procs: list[subprocess.Popen[bytes]] = []
        self.switch: Switch | None = None
        self.gen_lines: list[dict[str, Any]] = []
        self.gen_summary: dict[str, Any] = {}
        self.notes: list[str] = []
        self.agents = a.agents
        self.t0 = 0.0
        self._start(rate, calls, limit)

    def _popen(self, cmd: list[str], cwd: Path, **kw: Any) -> subprocess.Popen[bytes]:
        with (cwd / "stdout.log").open("ab") as so:
            p = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=kw.pop("stdout", so),
                                 stderr=subprocess.STDOUT, start_new_session=True, **kw)  # fmt: skip
        self.procs.append(p)
        return p

    def _start(self, rate: float, calls: int, limit: int) -> None:
        a, mix, out = self.a, self.mix, self.out
        for d in ("gen", "uac", "agents"):
            (out / d).mkdir(parents=True, exist_ok=True)
        spec = {"flows": [{"name": f.name, "script": f.script, "hold_s": f.hold_s, "pacing": not f.queue}
                          for f in mix.flows], "capacity": max(512, 2 * limit)}  # fmt: skip
        (out / "gen" / "spec.json").write_text(json.dumps(spec))
        self.gen = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", "--spec", "spec.json", "--out", ".", "--max-seconds",
             str(a.bound_s)], cwd=out / "gen", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=(out / "gen" / "stderr.log").open("wb"), start_new_session=True,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )  # fmt: skip
        self.procs.append(self.gen)
        assert self.gen.stdout is not None
        hello = json.loads(self.gen.stdout.readline() or "{}").get("hello")
        if not hello:
            raise RuntimeError(f"generator did not start: {(out / 'gen' / 'stderr.log').read_text()[-2000:]}")
        self.gen_ports: dict[str, int] = hello["ports"]
        threading.Thread(target=self._read_gen, daemon=True).start()
        callers = [(str(u), f"pw{u}") for u in range(1001, 1001 + a.callers)]
        agents = [(str(u), f"pw{u}") for u in range(2001, 2001 + self.agents)]
        if a.target:
            self.target = a.target
            self.sip_port = int(a.target.rpartition(":")[2])
            self.control = Path(a.control) if a.control else None
        else:
            legs = 1 + sum(mix.share(f) for f in mix.flows if f.queue)  # per call: bridged calls have two
            rtp = free_port_range(min(19_000, max(400, int(2 * legs * 1.1 * limit))))  # RTP + RTCP per leg
            self.switch = sw = Switch(out / "switch", [*callers, *agents], transports=("udp",), log_level="info",
                                      rtp_ports=rtp, extra_toml=self._switch_toml(), run_args=self._run_args())  # fmt: skip
            text = sw.config_path.read_text().replace(
                "[switch]\n", f"[switch]\nmax_calls = {max(4000, 2 * limit)}\n", 1
            )
            sw.config_path.write_text(text)
            self._seed_broker(sw)
            try:
                sw.start(timeout=30.0)
            except RuntimeError as e:
                raise RuntimeError(
                    f"the switch did not start (were --media-workers/--rtp-mode accepted?): {e}"
                ) from None
            self.target, self.sip_port = sw.target, sw.port
            self.control = sw.data_dir / "control.sock"
        if self.agents:
            self._start_agents(agents)
        rows = interleave([f.weight for f in mix.flows], max(100, a.callers))
        lines = ["SEQUENTIAL"]
        for i, fi in enumerate(rows):
            f = mix.flows[fi]
            user, pw = callers[i % len(callers)]
            lines.append(f"{user};{pw};{self.gen_ports[f.name]};{f.name};{int(f.hold_s * 1000)}")
        (out / "uac" / "users.csv").write_text("\n".join(lines) + "\n")
        self.rows = [mix.flows[i].name for i in rows]
        self.cp_port = free_port(tcp=False)
        uac_port = free_port()
        self.uac_cmd = [
            "sipp", self.target, "-sf", str(UAC_XML), *SIPP_COMMON, "-s", HOTLINE, "-inf", "users.csv",
            "-i", LOOPBACK, "-p", str(uac_port), "-mi", LOOPBACK, "-mp", str(free_port(even=True)),
            "-m", str(calls), "-r", f"{rate:g}", "-l", str(limit), "-cp", str(self.cp_port),
            "-trace_stat", "-stf", "stat.csv", "-trace_err", "-error_file", "errors.log",
            "-trace_logs", "-log_file", "logs.log",
            "-trace_rtt", "-rtt_freq", "1", "-timeout", f"{int(a.bound_s)}s", "-timeout_error",
        ]  # fmt: skip
        self.t0 = time.monotonic()
        self.t_wall0 = time.time()
        self.uac = self._popen(self.uac_cmd, out / "uac")

    def _run_args(self) -> list[str]:
        if self.a.media_workers is not None:
            return ["--media-workers", str(self.a.media_workers)]
        return []

    def _switch_toml(self) -> str:
        keys = {
            "1": "flow:quote",
            "2": "flow:balance",
            "3": "flow:order",
            "4": "flow:positions",
            "0": f"queue:{QUEUE}",
        }
        lines = [f'[[routes]]\nmatch = "{HOTLINE}"\nto = "ivr:hotline"\n', '[trading]\nbackend = "sim"\n',
                 '[ivr.hotline]\nprompt = "welcome_main"\ntimeout_s = 5\nretries = 3\n[ivr.hotline.keys]']  # fmt: skip
        lines += [f'"{k}" = "{v}"' for k, v in keys.items()]
        lines += ["", f"[queues.{QUEUE}]", 'strategy = "longest_idle"', f'skill = "{QUEUE}"', "ring_timeout_s = 15",
                  f"wrapup_s = {self.a.wrapup}", "max_wait_s = 300", "announce_position_every_s = 30",
                  'on_timeout = "hangup"', 'music = "moh"', 'callback_key = ""', 'voicemail_key = ""']  # fmt: skip
        for u in range(2001, 2001 + self.agents):
            lines += ["", f"[agents.{u}]", f'extension = "{u}"', f"skills = {{ {QUEUE} = 5 }}"]
        media = [f'rtp_mode = "{self.a.rtp_mode}"'] if self.a.rtp_mode else []
        if self.a.realtime_priority:
            media.append(f"realtime_priority = {self.a.realtime_priority}")
        if media:
            lines += ["", "[media]", *media]
        return "\n".join(lines) + "\n"

    def _seed_broker(self, sw: Switch) -> None:
        from softswitch.trading.sim import SimBroker

        sw.cli("broker", "seed")
        broker = SimBroker(sw.data_dir / "broker.sqlite")
        try:
            holdings = {
                "600519": (100, Decimal("1500")),
                "600036": (1000, Decimal("35")),
                "000001": (500, Decimal("11")),
            }
            broker.create_account(
                self.mix.account, self.mix.pin, cash=Decimal("10000000000"), positions=holdings
            )
        finally:
            broker.close()

    def _start_agents(self, agents: list[tuple[str, str]]) -> None:
        from softswitch.acd.control import control_request
        from tests.peers import register_contact

        port = _port_outside(0, 0)
        for user, pw in agents:
            status = register_contact(self.sip_port, user, pw, contact_port=port, expires=3600)
            if status != 200:
                raise RuntimeError(f"REGISTER of agent {user} got {status}")
        media = free_port(even=True)
        cmd = ["sipp", "-sf", str(AGENT_XML), *SIPP_COMMON, "-i", LOOPBACK, "-p", str(port), "-mi", LOOPBACK,
               "-mp", str(media), "-rtp_echo", "-key", "sdp_port", str(media), "-m", "10000000", "-aa",
               "-trace_stat", "-stf", "stat.csv", "-trace_err", "-error_file", "errors.log",
               "-timeout", f"{int(self.a.bound_s)}s"]  # fmt: skip
        self.agent_sipp = self._popen(cmd, self.out / "agents")
        time.sleep(0.3)
        if self.control is None:
            self.notes.append("agents not logged in: no --control socket for --target")
            return
        for user, _ in agents:
            answer = control_request(self.control, {"cmd": "agent", "agent": user, "action": "login"})
            if not answer.get("ok"):
                raise RuntimeError(f"agent {user} login: {answer}")

    def _read_gen(self) -> None:
        assert self.gen.stdout is not None
        for line in self.gen.stdout:
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if "tick" in obj:
                    self.gen_lines.append(obj["tick"])
                elif "summary" in obj:
                    self.gen_summary = obj["summary"]

    def set_rate(self, cps: float) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(f"cset rate {cps:g}".encode(), (LOOPBACK, self.cp_port))

    def stop_generator(self) -> None:
        if self.gen.poll() is None:
            self.gen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.gen.wait(timeout=60)
        deadline = time.monotonic() + 5
        while not self.gen_summary and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
        if self.switch is not None:
            self.switch.stop()


# ---------------------------------------------------------------- sampling


class Sampler:
    """Per-second CPU of the switch (with its media workers), the generator, SIPp and the machine."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.rows: list[dict[str, Any]] = []

    def sample(self) -> dict[str, Any]:
        rig = self.rig
        busy, _softirq, total = _machine_cpu()
        row: dict[str, Any] = {"t": time.monotonic() - rig.t0, "busy": busy, "total": total}
        if rig.switch is not None and rig.switch.proc is not None:
            row["switch_cpu"], row["switch_rss"] = tree_cpu(rig.switch.pid)
        for name, p in (("gen", rig.gen), ("uac", rig.uac), ("agents", getattr(rig, "agent_sipp", None))):
            if p is not None:
                with contextlib.suppress(OSError, IndexError, ValueError):
                    row[f"{name}_cpu"] = proc_cpu_seconds(p.pid)
        self.rows.append(row)
        return row

    def cpu(self, t_a: float, t_b: float) -> dict[str, float]:
        """CPU % of one core per process, and machine %, between t_a and t_b (bench seconds)."""
        rows = [r for r in self.rows if t_a <= r["t"] <= t_b]
        if len(rows) < 2:
            return {}
        a, b = rows[0], rows[-1]
        dt = b["t"] - a["t"]
        out = {"machine_pct": round(100 * (b["busy"] - a["busy"]) / max(1.0, b["total"] - a["total"]), 1)}
        for k in ("switch", "gen", "uac", "agents"):
            if f"{k}_cpu" in a and f"{k}_cpu" in b:
                out[f"{k}_pct"] = round(100 * (b[f"{k}_cpu"] - a[f"{k}_cpu"]) / dt, 1)
        rss = [r["switch_rss"] for r in rows if "switch_rss" in r]
        if rss:
            out["switch_rss_mib_peak"] = round(max(rss), 1)
        return out


def progress(t: float, total: float, up: int, cps: float, failed: int, label: str) -> None:
    width = 30
    done = min(width, int(width * t / total)) if total else width
    sys.stderr.write(f"\r{label} [{'#' * done}{'.' * (width - done)}] {t:5.0f}/{total:.0f} s  calls up {up:5d}"
                     f"  CPS {cps:5.1f}  failed {failed}   ")  # fmt: skip
    sys.stderr.flush()


# ---------------------------------------------------------------- judging


@dataclass
class Calls:
    """Per-call facts from SIPp's logs, the switch's log and its queue log."""

    answered: dict[str, tuple[str, float]]  # call id -> (flow, wall time)
    ended: dict[str, float]
    failed: dict[str, tuple[str, float]]  # call id -> (reason, wall time)
    prompts: dict[str, list[str]]
    digits: dict[str, int]
    connected: set[str]


def read_sipp_logs(
    uac: Path,
) -> tuple[dict[str, tuple[str, float]], dict[str, float], dict[str, tuple[str, float]]]:
    answered: dict[str, tuple[str, float]] = {}
    ended: dict[str, float] = {}
    p = uac / "logs.log"
    for m in SIPP_LOG.finditer(p.read_text(errors="replace") if p.exists() else ""):
        t = int(m.group(4)) + int(m.group(5)) / 1e6
        if m.group(1) == "answered":
            answered[m.group(2)] = (m.group(3) or "?", t)
        else:
            ended[m.group(2)] = t
    failed: dict[str, tuple[str, float]] = {}
    e = uac / "errors.log"
    text = e.read_text(errors="replace") if e.exists() else ""
    # SIPp writes "DATE\tTIME\tEPOCH: message" entries, not always newline-separated
    parts = SIPP_ERR_STAMP.split(text)
    for i in range(1, len(parts) - 1, 2):
        t, msg = float(parts[i]), parts[i + 1]
        cid = SIPP_ERR.search(msg)
        if not cid:
            continue
        code = re.search(r"received 'SIP/2\.0 (\d{3})", msg)
        if code:
            reason = code.group(1)
        elif "unexpected BYE" in msg or "received 'BYE" in msg:
            reason = "BYE from switch"
        elif "timeout" in msg.lower() or "retrans" in msg.lower():
            reason = "timeout"
        else:
            reason = "other"
        failed.setdefault(cid.group(1), (reason, t))
    return answered, ended, failed


def read_switch(log: str, data_dir: Path | None) -> tuple[dict[str, list[str]], dict[str, int], set[str]]:
    prompts = {cid: p.strip().split(",") for cid, p in PROMPTS_LINE.findall(log)}
    digits = {cid: int(n) for cid, n in DIGITS_LINE.findall(log)}
    connected: set[str] = set()
    text = data_dir / "queue_log" if data_dir is not None else None
    if text is not None and text.exists():  # the Asterisk queue_log: time|callid|queue|agent|event|data...
        for line in text.read_text(errors="replace").splitlines():
            p = line.split("|")
            if len(p) >= 5 and p[4] == "CONNECT":
                connected.add(p[1])
    return prompts, digits, connected


def judge(calls: Calls, mix: Mix, t_a: float = 0.0, t_b: float = math.inf) -> dict[str, Any]:
    """Success per flow over the calls answered between wall times t_a and t_b that have ended
    (a step's load is judged by the calls it offered; calls still up are left for a later look)."""
    flows = {f.name: f for f in mix.flows}
    per: dict[str, Counter[str]] = {f.name: Counter() for f in mix.flows}
    for cid, (flow, answered_at) in calls.answered.items():
        if not t_a <= answered_at < t_b or flow not in flows:
            continue
        if cid not in calls.ended and cid not in calls.failed:
            continue
        c = per[flow]
        c["calls"] += 1
        ok_sipp = cid in calls.ended and cid not in calls.failed
        ok_flow = flow_completed(calls.prompts.get(cid, []), flows[flow], cid in calls.connected)
        c["sipp_ok"] += ok_sipp
        c["flow_ok"] += ok_flow
        c["ok"] += ok_sipp and ok_flow
        c["digits_recognised"] += calls.digits.get(cid, 0)
        c["digits_sent"] += flows[flow].digits if cid in calls.prompts else 0
    unanswered = [r for cid, (r, t) in calls.failed.items() if cid not in calls.answered and t_a <= t < t_b]
    total = sum(c["calls"] for c in per.values()) + len(unanswered)
    ok = sum(c["ok"] for c in per.values())
    return {
        "calls_judged": total, "ok": ok, "success": round(ok / total, 5) if total else None,
        "per_flow": {k: dict(v) for k, v in per.items()},
        "failures_by_code": dict(Counter(r for r, _ in calls.failed.values())),
        "unanswered": len(unanswered),
        "digits_recognised": sum(c["digits_recognised"] for c in per.values()),
        "digits_sent": sum(c["digits_sent"] for c in per.values()),
    }  # fmt: skip


def pacing_window(npz: Path, t_a: float, t_b: float, t_wall0_bench: float) -> dict[str, Any]:
    """Pacing lateness over the packets that arrived between bench seconds t_a and t_b."""
    if not npz.exists():
        return pacing_summary(np.zeros(0))
    d = np.load(npz)
    shift = float(d["t_wall0"]) - t_wall0_bench  # generator seconds -> bench seconds
    sec = d["sec"].astype(np.float64) + shift
    m = (sec >= t_a) & (sec < t_b)
    return pacing_summary(lateness_ms(d["call"][m], d["off"][m]))


def setup_series(uac: Path) -> list[tuple[float, float]]:
    """(seconds since SIPp started, setup ms) of every call, from SIPp's rtt file."""
    out = []
    for f in uac.glob("*_rtt.csv"):
        for line in f.read_text(errors="replace").splitlines()[1:]:
            p = line.split(";")
            if len(p) >= 3 and p[2] == "setup":
                with contextlib.suppress(ValueError):
                    out.append((float(p[0]) / 1000, float(p[1])))
    return sorted(out)


# ---------------------------------------------------------------- a run


def _sipp_state(uac: Path) -> dict[str, int]:
    rows = stat_rows(uac / "stat.csv")
    if not rows:
        return {}
    r = rows[-1]
    return {"up": _int(r.get("CurrentCall")), "created": _int(r.get("TotalCallCreated")),
            "failed": _int(r.get("FailedCall(C)")), "ok": _int(r.get("SuccessfulCall(C)"))}  # fmt: skip


def play(a: argparse.Namespace, mix: Mix, steps: list[tuple[float, float]], *, ramp: bool) -> dict[str, Any]:
    """Play ``steps`` of (CPS, seconds); ramp: stop after the first step that fails the thresholds."""
    keep = a.out is not None
    out = Path(a.out).resolve() if keep else Path(tempfile.mkdtemp(prefix="bench-day-"))
    out.mkdir(parents=True, exist_ok=True)
    top = max(c for c, _ in steps)
    limit = a.limit or max(50, int(2 * top * mix.mean_hold_s) + 50)
    calls = 10_000_000 if ramp else max(1, round(steps[0][0] * steps[0][1]))
    if a.agents is None:
        agent_cps = top * sum(mix.share(f) for f in mix.flows if f.queue)
        span = min(
            sum(s for _, s in steps), max((f.hold_s for f in mix.flows if f.queue), default=0) + a.wrapup
        )
        a.agents = math.ceil(agent_cps * span * 1.15) + 2 if agent_cps else 0
    a.bound_s = sum(s for _, s in steps) + max(f.hold_s for f in mix.flows) + 90
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench", *a.argv]), "source": source_fingerprint(), "cpus": os.cpu_count(),
        "machine": _machine(), "agents": a.agents, "callers": a.callers, "sipp_limit": limit,
        "media_workers": a.media_workers, "rtp_mode": a.rtp_mode or "per_leg (default)",
        "realtime_priority": a.realtime_priority,
        "mean_hold_s": round(mix.mean_hold_s, 1),
    }  # fmt: skip
    rig: Rig | None = None
    try:
        rig = Rig(a, mix, out, steps[0][0], calls, limit)
        result["target"] = rig.target
        result["notes"] = rig.notes
        sampler = Sampler(rig)
        per_second: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        t_step = 0.0
        total = sum(s for _, s in steps)
        label = "ramp" if ramp else "day"
        for i, (cps, seconds) in enumerate(steps):
            if i:
                rig.set_rate(cps)
            t_end = t_step + seconds
            while (t := time.monotonic() - rig.t0) < t_end and rig.uac.poll() is None:
                s = sampler.sample()
                st = _sipp_state(out / "uac")
                per_second.append({"t": round(t, 1), **st, **{k: s[k] for k in s if k.endswith("_cpu")}})
                cps_now = _rate(per_second)
                progress(t, total, st.get("up", 0), cps_now, st.get("failed", 0), f"{label} {cps:g} cps")
                time.sleep(max(0.0, 1.0 - (time.monotonic() - rig.t0 - t)))
            if ramp:
                row = _step_row(rig, sampler, mix, cps, t_step, t_end, final=False)
                rows.append(row)
                sys.stderr.write(f"\n  step {cps:g} cps: {_row_text(row)}\n")
                if not row["held"]:
                    break
            t_step = t_end
        # no new calls; let the calls in progress end (bounded)
        if ramp and rig.uac.poll() is None:
            rig.uac.send_signal(signal.SIGUSR1)
        t_stop_offer = time.monotonic() - rig.t0
        deadline = rig.t0 + a.bound_s
        while rig.uac.poll() is None and time.monotonic() < deadline:
            s = sampler.sample()
            st = _sipp_state(out / "uac")
            t = time.monotonic() - rig.t0
            per_second.append({"t": round(t, 1), **st, **{k: s[k] for k in s if k.endswith("_cpu")}})
            progress(t, total, st.get("up", 0), 0.0, st.get("failed", 0), "ending")
            time.sleep(1.0)
        sys.stderr.write("\n")
        with contextlib.suppress(subprocess.TimeoutExpired):
            rig.uac.wait(timeout=max(1.0, deadline - time.monotonic()))
        rig.stop_generator()
        t_all = time.monotonic() - rig.t0
        calls_facts = _facts(rig)
        if not ramp:
            row = _window_row(rig, sampler, mix, steps[0][0], 0.0, t_stop_offer, t_all, calls_facts)
            rows.append(row)
        else:  # re-judge every step now that all its calls have ended
            for row in rows:
                row.update(_judged(rig, sampler, mix, row["t_a"], row["t_b"], calls_facts))
                row["held"] = _held(row, a)
        result.update(rows=rows, per_second=per_second, generator=rig.gen_summary)
        result["switch_log"] = _log_problems(rig)
        if ramp:
            held = [r["cps"] for r in rows if r["held"]]
            result["highest_held_cps"] = max(held) if held else None
        if a.plot:
            plot(result, Path(a.plot), rig)
        return result
    finally:
        if rig is not None:
            rig.close()
        if not keep:
            shutil.rmtree(out, ignore_errors=True)


def _machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        model = next(
            (x.split(":", 1)[1].strip() for x in text.splitlines() if x.startswith("model name")), ""
        )
    return f"{os.cpu_count()} vCPU {model}, Python {sys.version.split()[0]}"


def _rate(per_second: list[dict[str, Any]], span: int = 5) -> float:
    if len(per_second) < 2:
        return 0.0
    a, b = per_second[max(0, len(per_second) - 1 - span)], per_second[-1]
    dt = b["t"] - a["t"]
    return (b.get("created", 0) - a.get("created", 0)) / dt if dt > 0 else 0.0


def _facts(rig: Rig) -> Calls:
    answered, ended, failed = read_sipp_logs(rig.out / "uac")
    log = rig.switch.log() if rig.switch is not None else ""
    prompts, digits, connected = read_switch(log, rig.switch.data_dir if rig.switch is not None else None)
    return Calls(answered, ended, failed, prompts, digits, connected)


def _judged(rig: Rig, sampler: Sampler, mix: Mix, t_a: float, t_b: float, calls: Calls) -> dict[str, Any]:
    w0 = rig.t_wall0
    j = judge(calls, mix, w0 + t_a, w0 + t_b)
    setups = [ms for t, ms in setup_series(rig.out / "uac") if t_a <= t < t_b]
    pacing = pacing_window(rig.out / "gen" / "pacing.npz", t_a, t_b, w0)
    return {"judged": j, "setup_ms": {"n": len(setups), "p50": percentile(setups, 50), "p99": percentile(setups, 99),
                                      "max": max(setups) if setups else None}, "pacing": pacing}  # fmt: skip


def _common(rig: Rig, sampler: Sampler, cps: float, t_a: float, t_b: float) -> dict[str, Any]:
    st = [r for r in _per_second_rows(rig) if t_a <= r["t"] < t_b]
    created = (st[-1].get("created", 0) - st[0].get("created", 0)) if len(st) >= 2 else 0
    dt = (st[-1]["t"] - st[0]["t"]) if len(st) >= 2 else 0.0
    gen = [g for g in rig.gen_lines if t_a <= g["t"] < t_b]
    cpu = sampler.cpu(t_a, t_b)
    peak = max((r.get("up", 0) for r in st), default=0)
    legs = max((sum(g["active"].values()) for g in gen), default=0)
    row = {"cps": cps, "t_a": round(t_a, 1), "t_b": round(t_b, 1), "offered_cps": cps,
           "achieved_cps": round(created / dt, 2) if dt else None, "peak_concurrent": peak,
           "peak_generator_calls": legs, "cpu": cpu}  # fmt: skip
    share = cpu.get("switch_pct", 0) / 100
    if share > 0:
        # media legs through the switch: every call's leg, plus the agent leg of bridged calls
        queued = sum(g["active"].get(f, 0) for g in gen[-1:] for f in ("agent",))
        row["legs_per_core"] = round((legs + queued) / share) if legs else None
    return row


def _per_second_rows(rig: Rig) -> list[dict[str, Any]]:
    return [{"t": _elapsed(r.get("ElapsedTime(C)", "")), "created": _int(r.get("TotalCallCreated", "0")),
             "up": _int(r.get("CurrentCall", "0"))} for r in stat_rows(rig.out / "uac" / "stat.csv")]  # fmt: skip


def _int(v: str | None) -> int:
    return int(v) if v and v.isdigit() else 0


def _elapsed(v: str) -> float:
    m = re.fullmatch(r"(\d+):(\d+):(\d+)(?::(\d+))?", v or "")
    if not m:
        return 0.0
    h, mi, s = (int(x) for x in m.groups()[:3])
    return h * 3600 + mi * 60 + s + int(m.group(4) or 0) / 1e6


def _window_row(rig: Rig, sampler: Sampler, mix: Mix, cps: float, t_a: float, t_b: float, t_all: float,
                calls: Calls) -> dict[str, Any]:  # fmt: skip
    row = _common(rig, sampler, cps, t_a, t_b)
    row.update(_judged(rig, sampler, mix, -1e9, 1e9, calls))
    row["peak_concurrent"] = max(
        row["peak_concurrent"], max((r["up"] for r in _per_second_rows(rig)), default=0)
    )
    row["cpu_whole_run"] = sampler.cpu(0, t_all)
    return row


def _step_row(
    rig: Rig, sampler: Sampler, mix: Mix, cps: float, t_a: float, t_b: float, *, final: bool
) -> dict[str, Any]:
    row = _common(rig, sampler, cps, t_a, t_b)
    if rig.gen.poll() is None:  # pacing so far: the generator dumps its records
        n = len(rig.gen_lines)
        rig.gen.send_signal(signal.SIGUSR1)
        time.sleep(1.0 if n else 0.1)
    row.update(_judged(rig, sampler, mix, t_a, t_b, _facts(rig)))
    row["held"] = _held(row, rig.a)
    return row


def _held(row: dict[str, Any], a: argparse.Namespace) -> bool:
    j, s, p = row["judged"], row["setup_ms"], row["pacing"]
    ok = j["success"] is None or j["success"] >= a.min_success
    ok = ok and (s["p99"] is None or s["p99"] < a.max_setup_p99)
    return bool(ok and (p["p99_ms"] is None or p["p99_ms"] < a.max_pacing_p99))


def _log_problems(rig: Rig) -> dict[str, Any]:
    if rig.switch is None:
        return {}
    log = rig.switch.log()
    bad = [x for x in log.splitlines() if re.search(r"\b(ERROR|CRITICAL)\b", x)]
    return {"errors": len(bad), "tracebacks": len(rig.switch.tracebacks()), "head": bad[:5],
            "exit": rig.switch.stop()}  # fmt: skip


# ---------------------------------------------------------------- output


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _row_text(r: dict[str, Any]) -> str:
    j, s, p, c = r["judged"], r["setup_ms"], r["pacing"], r["cpu"]
    return (f"achieved {r['achieved_cps']} cps, peak {r['peak_concurrent']} up, success {_pct(j['success'])}"
            f" ({j['ok']}/{j['calls_judged']}), setup p99 {_ms(s['p99'])} ms, pacing p99 {p['p99_ms']} ms,"
            f" switch CPU {c.get('switch_pct', '-')} %  -> {'held' if r.get('held', True) else 'FAILED'}")  # fmt: skip


def table(result: dict[str, Any]) -> str:
    head = ("| offered cps | achieved cps | peak concurrent | success | failures by code | setup p50 / p99 ms"
            " | DTMF recognised / sent | pacing p50 / p99 / max ms | switch CPU % (RSS MiB) | generator / SIPp uac /"
            " agents CPU % | machine CPU % | legs per core |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:
        j, s, p, c = r["judged"], r["setup_ms"], r["pacing"], r["cpu"]
        lines.append(
            f"| {r['offered_cps']:g} | {r['achieved_cps']} | {r['peak_concurrent']} | {_pct(j['success'])} ({j['ok']}/{j['calls_judged']})"
            f" | {j['failures_by_code'] or '-'} | {_ms(s['p50'])} / {_ms(s['p99'])} | {j['digits_recognised']} / {j['digits_sent']}"
            f" | {p['p50_ms']} / {p['p99_ms']} / {p['max_ms']} | {c.get('switch_pct', '-')} ({c.get('switch_rss_mib_peak', '-')})"
            f" | {c.get('gen_pct', '-')} / {c.get('uac_pct', '-')} / {c.get('agents_pct', '-')} | {c.get('machine_pct', '-')}"
            f" | {r.get('legs_per_core') or '-'} |"
        )  # fmt: skip
    return "\n".join(lines)


def report(result: dict[str, Any]) -> str:
    lines = [f"{result['command']}", f"  machine {result['machine']}; softswitch sources {result['source']};"
             f" media workers {result['media_workers'] or 'none (in-process)'}, rtp mode {result['rtp_mode']},"
             f" realtime priority {result.get('realtime_priority') or 'off'}",
             f"  {result['agents']} agents, {result['callers']} caller accounts, mean hold {result['mean_hold_s']} s"]  # fmt: skip
    if "load" in result:
        w = result["load"]
        lines.append(f"  window {w['window']}: {w['window_calls']} calls ({w['window_fraction']:.2%} of"
                     f" {w['calls_per_day']:,.0f} x {w['news_day']:g}) -> {w['cps']} cps, ~{w['expected_concurrent']}"
                     f" concurrent (Little: cps x mean hold {w['mean_hold_s']} s; holds {w['hold_s']})")  # fmt: skip
    lines.append(table(result))
    for r in result["rows"]:
        per = {k: f"{v.get('ok', 0)}/{v.get('calls', 0)}" for k, v in r["judged"]["per_flow"].items()}
        lines.append(
            f"  {r['offered_cps']:g} cps: per flow ok/calls {per}; unanswered {r['judged']['unanswered']}"
        )
    if "highest_held_cps" in result:
        lines.append(f"  highest step held: {result['highest_held_cps']} cps")
    lp = result.get("switch_log", {})
    if lp:
        lines.append(f"  switch log: {lp['errors']} ERROR lines, {lp['tracebacks']} tracebacks, exit {lp['exit']}"
                     + ("".join(f"\n    {x}" for x in lp["head"])))  # fmt: skip
    for n in result.get("notes", []):
        lines.append(f"  note: {n}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path, rig: Rig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _per_second_rows(rig)
    t = np.array([r["t"] for r in rows])
    created = np.array([r["created"] for r in rows], dtype=float)
    cps = np.r_[0, np.diff(created) / np.maximum(np.diff(t), 1e-9)] if len(t) else np.zeros(0)
    setups = setup_series(rig.out / "uac")
    fig, ax = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    ax[0].plot(t, cps, label="achieved CPS")
    ax[0].set_ylabel("calls/s")
    ax[1].plot(t, [r["up"] for r in rows], label="concurrent calls (SIPp)")
    ax[1].set_ylabel("calls up")
    if setups:
        st = np.array(setups)
        sec = np.floor(st[:, 0])
        xs = np.unique(sec)
        ax[2].plot(xs, [np.percentile(st[sec == x, 1], 99) for x in xs], ".-")
    ax[2].set_ylabel("setup p99 (ms)")
    ax[2].set_xlabel("seconds")
    fig.suptitle(result["command"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- command line


def _common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--curve", type=Path, default=CURVE, help="day curve CSV (default bench/profiles/day_curve.csv)"
    )
    ap.add_argument(
        "--mix", type=Path, default=MIX, help="call mix TOML (default bench/profiles/call_mix.toml)"
    )
    ap.add_argument("--target", help="HOST:PORT of a running switch (default: start one)")
    ap.add_argument("--control", help="with --target: its control socket, to log the agents in")
    ap.add_argument("--agents", type=int, help="agents (default: enough for the agent share of the calls)")
    ap.add_argument("--wrapup", type=float, default=5.0, help="agents' wrap-up s (default 5)")
    ap.add_argument("--callers", type=int, default=200, help="caller accounts (default 200)")
    ap.add_argument("--limit", type=int, help="SIPp -l (default 2 x cps x mean hold + 50)")
    ap.add_argument("--media-workers", type=int, help="passed to `softswitch run --media-workers N`")
    ap.add_argument("--rtp-mode", choices=["per_leg", "shared"], help="the switch's [media] rtp_mode")
    ap.add_argument(
        "--realtime-priority",
        type=int,
        default=0,
        metavar="N",
        help="the switch's [media] realtime_priority (SCHED_RR for the media engine; needs root)",
    )
    ap.add_argument("--json", dest="json_path", help="write the result as JSON to this file")
    ap.add_argument("--plot", help="PNG of CPS, concurrent calls and setup p99 over time")
    ap.add_argument("--out", help="keep config, logs and SIPp/generator files here")
    ap.add_argument("--min-success", type=float, default=THRESHOLDS["success"])
    ap.add_argument("--max-setup-p99", type=float, default=THRESHOLDS["setup_p99_ms"], help="ms")
    ap.add_argument("--max-pacing-p99", type=float, default=THRESHOLDS["pacing_p99_ms"], help="ms")


def parse(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = ap.add_subparsers(dest="cmd", required=True)
    day = sub.add_parser("day", help="play a window of the day")
    day.add_argument("--calls-per-day", type=float, default=300_000)
    day.add_argument("--news-day", type=float, default=1.0, help="multiply the day's calls (a news day: 3-4)")
    day.add_argument("--window", default="10:00-10:15", help="HH:MM-HH:MM (default the 10:00 peak)")
    day.add_argument("--duration", type=float, help="seconds to play (default: the whole window)")
    day.add_argument("--scale", type=float, default=1.0, help="multiply the window's CPS (smoke tests)")
    _common_args(day)
    ramp = sub.add_parser("ramp", help="raise CPS step by step until a threshold fails")
    ramp.add_argument("--start", type=float, default=5)
    ramp.add_argument("--step", type=float, default=5)
    ramp.add_argument("--step-duration", type=float, default=60)
    ramp.add_argument("--max", type=float, default=200)
    _common_args(ramp)
    a = ap.parse_args(argv)
    a.argv = list(argv)
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse(list(sys.argv[1:] if argv is None else argv))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the switch and SIPp on kill
    if shutil.which("sipp") is None:
        print("sipp is not installed (apt-get install sip-tester)", file=sys.stderr)
        return 2
    mix = load_mix(a.mix)
    if a.media_workers is not None or a.rtp_mode:
        print(f"switch options: --media-workers {a.media_workers}, rtp_mode {a.rtp_mode}", file=sys.stderr)
    if a.cmd == "day":
        load = window_load(a.calls_per_day, a.news_day, load_curve(a.curve), a.window, mix)
        cps = load["cps"] * a.scale
        duration = a.duration if a.duration is not None else load["window_s"]
        print(f"window {a.window}: {load['window_calls']} calls -> {cps:.2f} cps, ~{round(cps * mix.mean_hold_s)}"
              f" concurrent (mean hold {mix.mean_hold_s:.1f} s: {load['hold_s']}); playing {duration:g} s",
              file=sys.stderr)  # fmt: skip
        result = play(a, mix, [(cps, duration)], ramp=False)
        result["load"] = {**load, "cps_played": round(cps, 3), "duration_s": duration}
    else:
        steps = []
        c = a.start
        while c <= a.max + 1e-9:
            steps.append((c, a.step_duration))
            c += a.step
        result = play(a, mix, steps, ramp=True)
    print(report(result))
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(result, indent=1, default=str))
    ok = (
        all(r.get("held", _held(r, a)) for r in result["rows"])
        if a.cmd == "day"
        else bool(result.get("highest_held_cps"))
    )
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
