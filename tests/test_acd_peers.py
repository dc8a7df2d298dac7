"""The ACD end to end: ``softswitch run`` with SIPp agents' phones and SIPp callers on loopback.

Agents' phones are SIPp UASs (``tests/data/sipp/uas_agent.xml``: answer after 200 ms, wait for the
BYE; ``uas_ring.xml``: ring until CANCEL, never answer), each registered as its agent's SIP account
from its own port before SIPp binds it. Callers are SIPp UACs (``uac_queue.xml``: digest auth, the
queue answers at once, a pcap is played (tone + RFC 4733 keys for the IVR), hold ``-d`` ms, BYE).
Agents log in through the CLI (``softswitch agent login ID -c FILE``, the control socket).

What is checked comes from two sides that do not share code: the switch's queue log (SQLite,
``softswitch.acd.queue_log.QueueLog``), its CLI (``agents --json``, ``voicemail list``, ``report
--csv``), and what the SIPp processes themselves logged (wall-clock ``gettimeofday`` stamps of
answers, connects and BYEs, and their stat files).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re
import signal
import struct
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from softswitch.acd.queue_log import LoggedEntry, QueueLog
from softswitch.codecs.g711 import ulaw_encode
from softswitch.codecs.telephone_event import TelephoneEvent, digit_event, encode_event
from tests import peers
from tests.peers import SippProcess, Switch, require_tools
from tests.rtp_pcap import write_pcap

pytestmark = pytest.mark.peer

SCENARIOS = Path(__file__).parent / "data" / "sipp"
CALLERS = [str(u) for u in range(1001, 1009)]
AGENTS = ["2001", "2002", "2003", "2004"]
PASSWORDS = {u: f"pw{u}" for u in CALLERS + AGENTS}
USERS = list(PASSWORDS.items())
QUEUE, SHORT = "800", "801"  # queue:sales, queue:short
HOTLINE = "95565"
VIP_ACCOUNT, VIP_PIN = "10000002", "654321"  # softswitch.trading.sim.DEMO_ACCOUNTS: tier "vip"
MAX_MISSES = 2
WRAPUP_S = 1.0
SHORT_MAX_WAIT_S = 3.0

ACD_TOML = f"""
[[routes]]
match = "{QUEUE}"
to = "queue:sales"

[[routes]]
match = "{SHORT}"
to = "queue:short"

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
"8" = "flow:login"
"0" = "queue:sales"

[queues.sales]
skill = "sales"
strategy = "longest_idle"
ring_timeout_s = 2
wrapup_s = {WRAPUP_S}
max_wait_s = 60
announce_position_every_s = 0
max_misses = {MAX_MISSES}
vip_priority = true
on_timeout = "hangup"

[queues.short]
skill = "overflow"
max_wait_s = {SHORT_MAX_WAIT_S}
announce_position_every_s = 0
on_timeout = "voicemail:sales"

[agents.2001]
extension = "2001"
skills = {{ sales = 5 }}

[agents.2002]
extension = "2002"
skills = {{ sales = 5 }}

[agents.2003]
extension = "2003"
skills = {{ sales = 5, overflow = 1 }}

[agents.2004]
extension = "2004"
skills = {{ sales = 5 }}
"""

FRAME = 160  # 20 ms of 8 kHz audio
TE_PT = 101

_STAMP = re.compile(r"(\w+)(?: from=(\S+))? at=(\d+)(?:\.0+)?\.(\d+)")


# ---------------------------------------------------------------- media


def caller_pcap(path: Path, keys: Sequence[tuple[float, str]] = (), *, total_s: float = 2.0) -> Path:
    """An RTP pcap of a quiet 500 Hz tone with RFC 4733 ``keys`` ((start s, digit), 100 ms each)."""
    n_frames = int(total_s / 0.02)
    tone = (2000 * np.sin(2 * np.pi * 500 * np.arange(n_frames * FRAME) / 8000)).astype(np.int16)
    codes = ulaw_encode(tone)
    starts = {round(t / 0.02): k for t, k in keys}
    assert all(f + 5 < n_frames for f in starts), "pcap too short for the keys"
    packets: list[tuple[float, bytes]] = []
    t0, seq, ssrc = 1_700_000_000.0, 1000, 0xACD
    i = 0
    while i < n_frames:
        if i in starts:
            event, ts = digit_event(starts[i]), i * FRAME
            for k in range(1, 6):
                body = encode_event(TelephoneEvent(event, k == 5, 10, FRAME * k))
                for _ in range(3 if k == 5 else 1):
                    marker = 0x80 if k == 1 else 0
                    head = struct.pack("!BBHII", 0x80, marker | TE_PT, seq, ts, ssrc)
                    packets.append((t0 + (i + k - 1) * 0.02, head + body))
                    seq = (seq + 1) & 0xFFFF
            i += 5
            continue
        head = struct.pack("!BBHII", 0x80, 0, seq, i * FRAME, ssrc)
        packets.append((t0 + i * 0.02, head + codes[i * FRAME : (i + 1) * FRAME].tobytes()))
        seq = (seq + 1) & 0xFFFF
        i += 1
    write_pcap(path, packets)
    return path


# ---------------------------------------------------------------- what SIPp logged


@dataclass(frozen=True, slots=True)
class Stamp:
    """One ``what [from=USER] at=S.US`` line of a scenario's log."""

    what: str
    user: str
    at: float


def stamps(p: SippProcess) -> list[Stamp]:
    out = []
    for line in p.logs():
        m = _STAMP.search(line)
        if m:
            out.append(Stamp(m.group(1), m.group(2) or "", int(m.group(3)) + int(m.group(4)) / 1e6))
    return out


def first_stamp(p: SippProcess, what: str) -> float | None:
    return next((s.at for s in stamps(p) if s.what == what), None)


def span(p: SippProcess, start: str, end: str) -> float:
    """Seconds between the first ``start`` and ``end`` stamps of a scenario's log."""
    a, b = first_stamp(p, start), first_stamp(p, end)
    assert a is not None and b is not None, p.describe()
    return b - a


# ---------------------------------------------------------------- the harness


class AcdHarness:
    """The switch with the ACD config, SIPp agents and callers; :meth:`close` ends all of it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sw = Switch(folder / "switch", USERS, rtp_ports=peers.free_port_range(200), extra_toml=ACD_TOML)
        self.sipps: list[SippProcess] = []
        self._log: QueueLog | None = None

    def start(self, *, seed_broker: bool = False) -> AcdHarness:
        if seed_broker:
            self.cli("broker", "seed")
        self.sw.start()
        return self

    # ---- CLI ---------------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.sw.cli(*args, check=check, timeout=30)

    def login(self, agent: str) -> str:
        """``softswitch agent login``; returns the state it printed (ringing at once when a caller waits)."""
        out = self.cli("agent", "login", agent)
        m = re.fullmatch(rf"agent {agent}: (available|ringing)", out.stdout.strip())
        assert m, out.stdout
        return m.group(1)

    def agents_status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(self.cli("agents", "--json").stdout)
        return status

    # ---- peers -------------------------------------------------------------------------------
    def agent_phone(self, user: str, scenario: str = "uas_agent.xml", *, calls: int = 10) -> SippProcess:
        """A SIPp UAS registered as ``user`` (REGISTER from its own port, then SIPp binds it)."""
        port = peers.free_port()
        status = peers.register_contact(self.sw.port, user, PASSWORDS[user], contact_port=port)
        assert status == 200, f"REGISTER {user} -> {status}\n{self.sw.log()[-2000:]}"
        p = SippProcess(SCENARIOS / scenario, self.folder / f"agent-{user}", port=port, calls=calls,
                        timeout=60, extra=["-aa"])  # fmt: skip
        self.sipps.append(p)
        p.start()
        time.sleep(0.2)  # let SIPp bind its port
        assert p.running(), p.describe()
        return p

    def caller(
        self, user: str, number: str, hold_s: float, *, keys: Sequence[tuple[float, str]] = ()
    ) -> SippProcess:
        """A SIPp caller as ``user`` to ``number``, hanging up ``hold_s`` after the answer."""
        out = self.folder / f"caller-{user}"
        pcap = caller_pcap(
            self.folder / f"caller-{user}.pcap", keys, total_s=max(2.0, keys[-1][0] + 1) if keys else 2.0
        )
        p = SippProcess(SCENARIOS / "uac_queue.xml", out, target=self.sw.target, users=[(user, PASSWORDS[user])],
                        service=number, duration_ms=int(hold_s * 1000), pcap=pcap, timeout=hold_s + 20)  # fmt: skip
        self.sipps.append(p)
        return p.start()

    def finish(self, p: SippProcess, *, soft: bool = False) -> peers.SippResult:
        """Wait for a SIPp to end; ``soft``: a UAS is told to quit once its calls are over (SIGUSR1)."""
        if soft and p.proc is not None and p.proc.poll() is None:
            p.proc.send_signal(signal.SIGUSR1)  # SIPp's soft exit, like its q key
        res = p.wait(timeout=15)
        assert not res.timed_out, p.describe()
        return res

    # ---- the queue log ------------------------------------------------------------------------
    @property
    def queue_log(self) -> QueueLog:
        if self._log is None:
            self._log = QueueLog(self.sw.data_dir, text_file=False)
        return self._log

    def entries(self) -> list[LoggedEntry]:
        return self.queue_log.entries()

    def wait_for(
        self, pred: Callable[[list[LoggedEntry]], bool], what: str, timeout: float = 10.0
    ) -> list[LoggedEntry]:
        """Poll the queue log (the switch flushes it every 0.2 s) until ``pred`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.entries()
            if pred(found):
                return found
            if time.monotonic() >= deadline:
                pytest.fail(f"queue log never showed {what} within {timeout}s:\n{fmt(found)}\n"
                            f"switch log:\n{self.sw.log()[-4000:]}")  # fmt: skip
            time.sleep(0.1)

    def wait_event(
        self, event: str, *, count: int = 1, timeout: float = 10.0, **match: str
    ) -> list[LoggedEntry]:
        """Wait until ``count`` entries of ``event`` (with the given field values) are logged."""

        def hits(es: list[LoggedEntry]) -> list[LoggedEntry]:
            return [e for e in es if e.event == event and all(getattr(e, k) == v for k, v in match.items())]

        return hits(self.wait_for(lambda es: len(hits(es)) >= count, f"{count} x {event} {match}", timeout))

    def close(self) -> None:
        for p in self.sipps:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                p.kill()
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self.sw.stop()
        if self._log is not None:
            self._log.close()


def fmt(entries: Sequence[LoggedEntry]) -> str:
    return "\n".join(
        f"{e.time:.3f} {e.call_id} {e.queue} {e.agent} {e.event} {'|'.join(e.data)}" for e in entries
    )


def callers_by_call(entries: Sequence[LoggedEntry]) -> dict[str, str]:
    """Call-ID -> caller user, from the ENTERQUEUE entries (data: url, callerid)."""
    return {e.call_id: e.data[1] for e in entries if e.event == "ENTERQUEUE"}


def connects(entries: Sequence[LoggedEntry]) -> list[tuple[str, str]]:
    """(caller, agent) of every CONNECT, in log order."""
    who = callers_by_call(entries)
    return [(who[e.call_id], e.agent) for e in entries if e.event == "CONNECT"]


@pytest.fixture
def acd(tmp_path: Path) -> Iterator[AcdHarness]:
    require_tools("sipp")
    h = AcdHarness(tmp_path)
    try:
        yield h
    finally:
        h.close()


# ---------------------------------------------------------------- tests


def test_longest_idle_picks_agents_in_idle_order(acd: AcdHarness) -> None:
    """Round 1: the agents are rung in login order; round 2: in the order their wrap-ups ended."""
    acd.start()
    phones = {a: acd.agent_phone(a) for a in ("2001", "2002", "2003")}
    for agent in ("2002", "2003", "2001"):  # not the id order, not the registration order
        acd.login(agent)
        time.sleep(0.1)
    # round 1: each caller once the previous one is connected; the talks end 1002, 1003, 1001
    first = [acd.caller("1001", QUEUE, 6.0)]
    acd.wait_event("CONNECT", count=1)
    first.append(acd.caller("1002", QUEUE, 3.0))
    acd.wait_event("CONNECT", count=2)
    first.append(acd.caller("1003", QUEUE, 4.0))
    for p in first:
        assert acd.finish(p).successful == 1, p.describe()
    acd.wait_for(lambda es: sum(e.event.startswith("COMPLETE") for e in es) == 3, "3 completed calls")
    time.sleep(WRAPUP_S + 0.5)  # every wrap-up is over
    # round 2: 1004, 1005, 1006 get 2003, 2001, 2002 (idle since 1002's, 1003's, 1001's call ended)
    second = []
    for n, user in enumerate(("1004", "1005", "1006"), start=4):
        second.append(acd.caller(user, QUEUE, 2.0))
        acd.wait_event("CONNECT", count=n)
    for p in second:
        assert acd.finish(p).successful == 1, p.describe()
    entries = acd.wait_for(
        lambda es: sum(e.event.startswith("COMPLETE") for e in es) == 6, "6 completed calls"
    )

    expected = [("1001", "2002"), ("1002", "2003"), ("1003", "2001"),
                ("1004", "2003"), ("1005", "2001"), ("1006", "2002")]  # fmt: skip
    assert connects(entries) == expected, fmt(entries)
    assert not [e for e in entries if e.event == "RINGNOANSWER"], fmt(entries)
    # the phones' own logs agree: who answered whom
    answered = {a: [s.user for s in stamps(p) if s.what == "answered"] for a, p in phones.items()}
    assert answered == {"2001": ["1003", "1005"], "2002": ["1001", "1006"], "2003": ["1002", "1004"]}, (
        answered
    )
    for p in phones.values():
        assert acd.finish(p, soft=True).successful == 2, p.describe()
    assert not acd.sw.tracebacks(), acd.sw.tracebacks()


def test_no_answer_agent_is_skipped_then_auto_paused(acd: AcdHarness) -> None:
    """2004's phone rings and never answers: each caller goes on to 2001; the second miss pauses 2004."""
    acd.start()
    deaf = acd.agent_phone("2004", "uas_ring.xml", calls=5)
    good = acd.agent_phone("2001")
    acd.login("2004")  # the longest idle: rung first
    time.sleep(0.1)
    acd.login("2001")
    a = acd.caller("1001", QUEUE, 5.0)
    acd.wait_event("CONNECT", agent="2001")
    b = acd.caller("1002", QUEUE, 6.0)  # 2001 is busy: 2004 is rung again
    acd.wait_event("PAUSE", agent="2004")
    for p in (a, b):
        assert acd.finish(p).successful == 1, p.describe()
    entries = acd.wait_for(
        lambda es: sum(e.event.startswith("COMPLETE") for e in es) == 2, "2 completed calls"
    )
    who = callers_by_call(entries)
    calls = [(e.event, who.get(e.call_id, e.call_id), e.agent, e.data) for e in entries
             if e.event in ("RINGNOANSWER", "CONNECT", "PAUSE")]  # fmt: skip
    assert [c[:3] for c in calls] == [
        ("RINGNOANSWER", "1001", "2004"),
        ("CONNECT", "1001", "2001"),
        ("RINGNOANSWER", "1002", "2004"),
        ("PAUSE", "NONE", "2004"),
        ("CONNECT", "1002", "2001"),
    ], fmt(entries)
    assert calls[3][3] == ("no-answer",), fmt(entries)
    for event, _, _, data in calls:
        if event == "RINGNOANSWER":  # rung for ring_timeout_s = 2 s (milliseconds)
            assert 1800 <= int(data[0]) <= 2500, fmt(entries)

    status = acd.agents_status()["agents"]
    assert status["2004"]["state"] == "paused" and status["2004"]["reason"] == "no-answer", status
    assert status["2001"]["state"] in ("available", "wrap_up"), status
    # the deaf phone saw exactly the two rings, each cancelled; the good one answered both callers
    assert [s.user for s in stamps(good) if s.what == "answered"] == ["1001", "1002"]
    assert acd.finish(good, soft=True).successful == 2, good.describe()
    res = acd.finish(deaf, soft=True)
    assert deaf.messages().count("CANCEL sip:") == 2 and res.successful == 2, deaf.describe()
    assert not acd.sw.tracebacks(), acd.sw.tracebacks()


def test_abandoned_callers_are_logged_with_position_and_wait(acd: AcdHarness) -> None:
    """Nobody logged in: 1001 hangs up after 2.2 s, 1002 (joined 0.5 s later) after 4.3 s."""
    acd.start()
    a = acd.caller("1001", QUEUE, 2.2)
    acd.wait_event("ENTERQUEUE")
    time.sleep(0.5)
    b = acd.caller("1002", QUEUE, 4.3)
    res = [acd.finish(p) for p in (a, b)]
    assert all(r.successful == 1 for r in res), a.describe() + b.describe()
    entries = acd.wait_event("ABANDON", count=2)
    all_entries = acd.entries()
    who = callers_by_call(all_entries)
    waited = {"1001": span(a, "answered", "bye"), "1002": span(b, "answered", "bye")}
    got = {who[e.call_id]: e.data for e in entries}
    # ABANDON data: position when leaving, position when joining, wait (integer seconds)
    assert got["1001"][:2] == ("1", "1") and got["1002"][:2] == ("1", "2"), fmt(all_entries)
    for user, data in got.items():
        assert abs(int(data[2]) - waited[user]) <= 0.6, (user, data, waited)
    assert not acd.sw.tracebacks(), acd.sw.tracebacks()


def test_caller_beyond_max_wait_goes_to_voicemail(acd: AcdHarness) -> None:
    """queue:short (no agent has its skill logged in): after max_wait_s the caller leaves a message."""
    acd.start()
    hold = SHORT_MAX_WAIT_S + 9.0  # the voicemail greeting is ~6 s, then a beep and ~3 s of message
    p = acd.caller("1003", SHORT, hold)
    assert acd.finish(p).successful == 1, p.describe()
    entries = acd.wait_event("EXITWITHTIMEOUT", queue="short")
    assert entries[0].data[:2] == ("1", "1") and int(entries[0].data[2]) == SHORT_MAX_WAIT_S, fmt(entries)
    assert not [e for e in acd.entries() if e.event in ("ABANDON", "CONNECT")], fmt(acd.entries())
    deadline = time.monotonic() + 5
    while True:
        listing = acd.cli("voicemail", "list").stdout
        rows = [line.split() for line in listing.splitlines() if re.match(r"\s*\d+\s+\S+\s+\d{4}-", line)]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(rows) == 1, listing
    row = rows[0]  # id, box, date, time, duration, caller, path
    assert row[1] == "sales" and row[5] == "1003", listing
    # message length: from the end of the greeting and beep to the caller's BYE, about 2.5 s
    assert 1.0 <= float(row[4].rstrip("s")) <= hold - SHORT_MAX_WAIT_S, listing
    assert not acd.sw.tracebacks(), acd.sw.tracebacks()


def test_vip_caller_from_the_hotline_overtakes(acd: AcdHarness) -> None:
    """1001 waits in the queue; 1002 logs in to the hotline as the sim broker's VIP account and presses
    the queue key; when the only agent logs in, the VIP is connected first, then 1001."""
    acd.start(seed_broker=True)
    phone = acd.agent_phone("2001")
    normal = acd.caller("1001", QUEUE, 16.0)
    acd.wait_event("ENTERQUEUE")
    keys = "8" + VIP_ACCOUNT + "#" + VIP_PIN + "#" + "0"  # login flow, then the queue key
    vip = acd.caller("1002", HOTLINE, 11.0, keys=[(1.0 + 0.3 * i, k) for i, k in enumerate(keys)])
    entries = acd.wait_event("ENTERQUEUE", count=2, timeout=15)
    assert [e.data[1] for e in entries] == ["1001", "1002"], fmt(entries)
    time.sleep(0.5)
    assert acd.login("2001") == "ringing"  # two callers waited: routing is immediate
    entries = acd.wait_event("CONNECT", count=2, timeout=30)
    for p in (vip, normal):
        assert acd.finish(p).successful == 1, p.describe()
    entries = acd.wait_for(
        lambda es: sum(e.event.startswith("COMPLETE") for e in es) == 2, "2 completed calls"
    )
    assert connects(entries) == [("1002", "2001"), ("1001", "2001")], fmt(entries)
    # the VIP joined second but was placed first (origposition of COMPLETECALLER / COMPLETEAGENT)
    orig = {callers_by_call(entries)[e.call_id]: e.data[2] for e in entries if e.event.startswith("COMPLETE")}
    assert orig == {"1001": "1", "1002": "1"}, fmt(entries)
    assert re.search(r"ivr \S+: account \S+ logged in \(vip\)", acd.sw.log()), acd.sw.log()[-3000:]
    assert [s.user for s in stamps(phone) if s.what == "answered"] == ["1002", "1001"]
    assert not acd.sw.tracebacks(), acd.sw.tracebacks()


def report_rows(acd: AcdHarness, day: date) -> dict[tuple[str, str], dict[str, str]]:
    """``softswitch report --date DAY --csv``: the day's rows by (kind, name)."""
    text = acd.cli("report", "--date", day.isoformat(), "--csv").stdout
    rows = list(csv.DictReader(text.splitlines()))
    return {(r["kind"], r["name"]): r for r in rows if r["period_start"].startswith(day.isoformat())}


def test_report_matches_a_recount_of_the_sipp_side(acd: AcdHarness) -> None:
    """Answered, waiting, abandoning and timed-out callers; ``softswitch report`` against SIPp's own logs."""
    acd.start()
    phones = {a: acd.agent_phone(a) for a in ("2001", "2002")}
    acd.login("2001")
    time.sleep(0.1)
    acd.login("2002")
    t0 = time.time()
    callers = {  # user -> (number, hold s)
        "1005": (SHORT, SHORT_MAX_WAIT_S + 9.0),  # times out, then leaves a voicemail
        "1001": (QUEUE, 3.0),  # answered at once by 2001
        "1002": (QUEUE, 3.5),  # answered at once by 2002 (and ends after 1001)
        "1003": (QUEUE, 6.0),  # waits for 2001's wrap-up to end, then talks
        "1004": (QUEUE, 2.0),  # abandons behind 1003
    }
    sipps: dict[str, SippProcess] = {}
    for n, (user, (number, hold)) in enumerate(callers.items(), start=1):
        sipps[user] = acd.caller(user, number, hold)
        acd.wait_event("ENTERQUEUE", count=n)
    for p in sipps.values():
        assert acd.finish(p).successful == 1, p.describe()
    for p in phones.values():
        acd.finish(p, soft=True)
    acd.wait_for(lambda es: len([e for e in es if e.event in ("COMPLETECALLER", "COMPLETEAGENT", "ABANDON",
                 "EXITWITHTIMEOUT")]) == 5, "5 outcomes")  # fmt: skip

    # ---- the recount, from SIPp's logs and stats only
    answered_at: dict[str, float] = {}  # caller -> when its agent's phone got the ACK
    by_agent: dict[str, int] = {}
    for agent, phone in phones.items():
        got = [s for s in stamps(phone) if s.what == "answered"]
        by_agent[agent] = len(got)
        answered_at.update((s.user, s.at) for s in got)
        assert phone.result is not None and phone.result.successful == len(got), phone.describe()
    max_wait = {QUEUE: 60.0, SHORT: SHORT_MAX_WAIT_S}
    expect: dict[str, dict[str, Any]] = {}
    for user, p in sipps.items():
        number = callers[user][0]
        q = expect.setdefault(number, {"offered": 0, "answered": 0, "abandoned": 0, "timeout": 0,
                                       "waits": [], "answer_waits": [], "talks": []})  # fmt: skip
        joined, bye = first_stamp(p, "answered"), first_stamp(p, "bye")
        assert joined is not None and bye is not None, p.describe()
        q["offered"] += 1
        if user in answered_at:
            wait = answered_at[user] - joined
            q["answered"] += 1
            q["answer_waits"].append(wait)
            q["talks"].append(bye - answered_at[user])
        elif bye - joined < max_wait[number]:
            wait = bye - joined
            q["abandoned"] += 1
        else:
            wait = max_wait[number]
            q["timeout"] += 1
        q["waits"].append(wait)
    assert by_agent == {"2001": 2, "2002": 1}, by_agent  # the scenario went as planned
    assert expect[QUEUE]["abandoned"] == 1 and expect[SHORT]["timeout"] == 1, expect

    rows = report_rows(acd, date.fromtimestamp(t0))
    for number, name in ((QUEUE, "sales"), (SHORT, "short")):
        row, q = rows[("queue", name)], expect[number]
        for key in ("offered", "answered", "abandoned", "timeout"):
            assert int(row[key]) == q[key], (name, key, row, q)
        assert abs(float(row["max_wait_s"]) - max(q["waits"])) <= 0.6, (name, row, q)
        if q["answered"]:
            # hold and talk times are logged in whole seconds: each differs by at most 0.5 s
            assert abs(float(row["asa_s"]) - sum(q["answer_waits"]) / q["answered"]) <= 0.6, (name, row, q)
            assert abs(float(row["aht_s"]) - sum(q["talks"]) / q["answered"]) <= 0.6, (name, row, q)
            assert math.isclose(float(row["answer_rate"]), q["answered"] / q["offered"], abs_tol=1e-3), row
    total = rows[("total", "ALL")]
    assert [int(total[k]) for k in ("offered", "answered", "abandoned", "timeout")] == [5, 3, 1, 1], total
    for agent, n in by_agent.items():
        row = rows[("agent", agent)]
        assert int(row["answered"]) == n and int(row["no_answer"]) == 0, row
    assert not acd.sw.tracebacks(), acd.sw.tracebacks()
