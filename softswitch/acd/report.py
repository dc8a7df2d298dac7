"""Queue and agent statistics from the SQLite queue log: ``softswitch report -c FILE --date D``.

One local-time day, optionally cut into intervals (``--interval 15m|30m|1h``, aligned to local
midnight). Definitions (T = service-level threshold: ``--sl`` if given, else the queue's
``service_level_s``, else 20 s):

Queues. A call counts in the day/interval in which it entered the queue (ENTERQUEUE), whatever
the time of its outcome; a call that moves to another queue counts in each queue it entered.

- offered = ENTERQUEUE. Each offered call has one outcome: answered (CONNECT), abandoned (ABANDON),
  timeout (EXITWITHTIMEOUT), exit_key (EXITWITHKEY), voicemail (VOICEMAIL), callback (CALLBACK: the
  caller hung up keeping a place in line; it is not counted as answered even when the agent later
  connects), exit_empty (EXITEMPTY), or open (no outcome in the log yet: still waiting at the time
  of the report, or lost). diverted = DIVERT entries (refused before entering; not offered).
- answer rate = answered / offered.
- A call is answered within T when its hold time (CONNECT holdtime) <= T; a short abandon is an
  ABANDON with waittime <= T.
  SL1 = answered within T / answered.
  SL2 = answered within T / (offered - short abandons)  (short abandons count neither way).
- ASA = average hold time of answered calls; max wait = the longest wait of any offered call
  (hold time if answered, waittime of its exit otherwise).
- AHT = average talk time (COMPLETECALLER / COMPLETEAGENT calltime, TRANSFER calltime) of the
  queue's answered calls. Talk only: wrap-up is not in the queue log.

Agents. Counted by the time of each event: answered = CONNECT, no_answer = RINGNOANSWER, AHT =
average calltime of the calls the agent completed in the period. Time figures are clipped to the
period (and to the time of the report for today): logged in = AGENTLOGIN..AGENTLOGOFF (a session
open at the day's start or end is cut there; a logoff without a known login uses its logintime),
paused = PAUSE..UNPAUSE within a session (a logoff or a new login ends a pause), talk = for each
COMPLETE*/TRANSFER, the span [time - calltime, time].
occupancy = talk / (logged in - paused).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import dataclasses
import math
import re
import sqlite3
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .queue_log import QueueLog, QueueLogError, QueueLogEvent, db_path

if TYPE_CHECKING:
    from ..config import Config

DEFAULT_SL = 20.0
ALL = "ALL"
FOLLOW_S = 86400.0  # how long after the day the outcome of a call entered that day is looked for

_COMPLETE_CALLTIME = {"COMPLETECALLER": 1, "COMPLETEAGENT": 1, "TRANSFER": 3}  # index of calltime
_EXIT_WAIT = {  # outcome event -> (outcome, index of waittime)
    "ABANDON": ("abandoned", 2),
    "EXITWITHTIMEOUT": ("timeout", 2),
    "EXITWITHKEY": ("exit_key", 3),
    "VOICEMAIL": ("voicemail", 2),
    "CALLBACK": ("callback", 2),
    "EXITEMPTY": ("exit_empty", 2),
}
_TERMINAL = {*_COMPLETE_CALLTIME, *_EXIT_WAIT}


@dataclass(slots=True)
class QueueStats:
    """One queue (or ``ALL``) over one period. Counts per the module docstring."""

    name: str
    start: float
    end: float
    sl_threshold: float | None  # None: ALL over queues with different thresholds
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    abandoned_short: int = 0
    timeout: int = 0
    exit_key: int = 0
    voicemail: int = 0
    callback: int = 0
    exit_empty: int = 0
    open: int = 0
    diverted: int = 0
    answered_in_sl: int = 0
    wait_answered: float = 0.0
    max_wait: float = 0.0
    talk_calls: int = 0
    talk_total: float = 0.0

    @property
    def answer_rate(self) -> float | None:
        return self.answered / self.offered if self.offered else None

    @property
    def sl1(self) -> float | None:
        """Answered within T / answered."""
        return self.answered_in_sl / self.answered if self.answered else None

    @property
    def sl2(self) -> float | None:
        """Answered within T / (offered - abandoned within T)."""
        base = self.offered - self.abandoned_short
        return self.answered_in_sl / base if base > 0 else None

    @property
    def asa(self) -> float | None:
        return self.wait_answered / self.answered if self.answered else None

    @property
    def aht(self) -> float | None:
        return self.talk_total / self.talk_calls if self.talk_calls else None

    def add(self, o: QueueStats) -> None:
        for name in _QUEUE_SUMS:
            setattr(self, name, getattr(self, name) + getattr(o, name))
        self.max_wait = max(self.max_wait, o.max_wait)


_QUEUE_SUMS = (
    "offered", "answered", "abandoned", "abandoned_short", "timeout", "exit_key", "voicemail", "callback",
    "exit_empty", "open", "diverted", "answered_in_sl", "wait_answered", "talk_calls", "talk_total",
)  # fmt: skip


@dataclass(slots=True)
class AgentStats:
    """One agent over one period (module docstring)."""

    agent: str
    start: float
    end: float
    answered: int = 0
    no_answer: int = 0
    talk_calls: int = 0
    talk_total: float = 0.0  # calltime of the calls completed in the period (for AHT)
    talk_time: float = 0.0  # talk clipped to the period (for occupancy)
    logged_in: float = 0.0
    paused: float = 0.0

    @property
    def aht(self) -> float | None:
        return self.talk_total / self.talk_calls if self.talk_calls else None

    @property
    def occupancy(self) -> float | None:
        """Talk time / (logged-in time - paused time)."""
        staffed = self.logged_in - self.paused
        return self.talk_time / staffed if staffed > 0 else None


@dataclass(slots=True)
class Report:
    start: float
    end: float
    interval_s: int | None
    queues: list[QueueStats]  # whole period: each queue, then ALL
    agents: list[AgentStats]  # whole period
    queue_intervals: list[QueueStats] = field(
        default_factory=list
    )  # per interval: queues with calls, then ALL
    agent_intervals: list[AgentStats] = field(default_factory=list)  # per interval: agents with activity


@dataclass(slots=True)
class _Visit:
    queue: str
    entered: float
    periods: tuple[int, ...]
    threshold: float
    outcome: str | None = None
    talked: bool = False


@dataclass(slots=True)
class _Session:
    login: float | None = None
    pause: float | None = None


def _num(data: tuple[str, ...], i: int) -> float | None:
    try:
        v = float(data[i])
    except (IndexError, ValueError):
        return None
    return v if math.isfinite(v) else None


class _Builder:
    def __init__(
        self, start: float, end: float, interval_s: int | None, levels: Mapping[str, float], default_sl: float
    ) -> None:
        self.start, self.end, self.interval_s = start, end, interval_s
        self.levels, self.default_sl = levels, default_sl
        self.bounds: list[tuple[float, float]] = [(start, end)]
        if interval_s:
            t = start
            while t < end:
                self.bounds.append((t, min(t + interval_s, end)))
                t += interval_s
        self.bucket_starts = [b[0] for b in self.bounds[1:]]
        self.queues: dict[tuple[int, str], QueueStats] = {}
        self.agents: dict[tuple[int, str], AgentStats] = {}

    def periods(self, t: float) -> tuple[int, ...]:
        """Period indexes holding instant ``t``: 0 (the whole range) and its interval."""
        if not self.start <= t < self.end:
            return ()
        if not self.bucket_starts:
            return (0,)
        return (0, bisect.bisect_right(self.bucket_starts, t))

    def threshold(self, queue: str) -> float:
        return self.levels.get(queue, self.default_sl)

    def q(self, p: int, queue: str) -> QueueStats:
        s = self.queues.get((p, queue))
        if s is None:
            a, b = self.bounds[p]
            s = self.queues[(p, queue)] = QueueStats(queue, a, b, self.threshold(queue))
        return s

    def a(self, p: int, agent: str) -> AgentStats:
        s = self.agents.get((p, agent))
        if s is None:
            a, b = self.bounds[p]
            s = self.agents[(p, agent)] = AgentStats(agent, a, b)
        return s

    def spread(self, agent: str, attr: str, a: float, b: float) -> None:
        """Add the overlap of [a, b) with each period to the agent's ``attr``."""
        a, b = max(a, self.start), min(b, self.end)
        if b <= a:
            return
        s = self.a(0, agent)
        setattr(s, attr, getattr(s, attr) + (b - a))
        if not self.bucket_starts:
            return
        k = bisect.bisect_right(self.bucket_starts, a)
        while k < len(self.bounds) and self.bounds[k][0] < b:
            lo, hi = self.bounds[k]
            overlap = min(b, hi) - max(a, lo)
            if overlap > 0:
                s = self.a(k, agent)
                setattr(s, attr, getattr(s, attr) + overlap)
            k += 1


def compute(
    entries: Iterable[QueueLogEvent],
    start: float,
    end: float,
    *,
    interval_s: int | None = None,
    service_levels: Mapping[str, float] | None = None,
    default_sl: float = DEFAULT_SL,
    queues: Iterable[str] = (),
    now: float | None = None,
) -> Report:
    """Statistics for ``[start, end)`` from ``entries`` in time order. Entries before ``start`` only set
    the agents' state (logged in, paused); entries after ``end`` only complete calls that entered
    before it. ``queues`` are listed even without calls; sessions still open are cut at ``now``."""
    bld = _Builder(start, end, interval_s, service_levels or {}, default_sl)
    horizon = end if now is None else max(start, min(end, now))
    visits: dict[tuple[str, str], _Visit] = {}
    sessions: dict[str, _Session] = {}
    for e in entries:
        ev, t = e.event, e.time
        if ev == "ENTERQUEUE":
            key = (e.call_id, e.queue)
            ps = bld.periods(t)
            if not ps:
                visits.pop(key, None)
                continue
            visits[key] = _Visit(e.queue, t, ps, bld.threshold(e.queue))
            for p in ps:
                s = bld.q(p, e.queue)
                s.offered += 1
                s.open += 1
        elif ev == "CONNECT":
            for p in bld.periods(t):
                bld.a(p, e.agent).answered += 1
            v = visits.get((e.call_id, e.queue))
            if v is None or v.outcome is not None:
                continue
            v.outcome = "answered"
            wait = _num(e.data, 0)
            wait = t - v.entered if wait is None else wait
            for p in v.periods:
                s = bld.q(p, v.queue)
                s.open -= 1
                s.answered += 1
                s.wait_answered += wait
                s.max_wait = max(s.max_wait, wait)
                s.answered_in_sl += wait <= v.threshold
        elif ev in _EXIT_WAIT:
            v = visits.get((e.call_id, e.queue))
            if v is None or v.outcome is not None:
                continue
            outcome, i = _EXIT_WAIT[ev]
            v.outcome = outcome
            wait = _num(e.data, i)
            wait = t - v.entered if wait is None else wait
            for p in v.periods:
                s = bld.q(p, v.queue)
                s.open -= 1
                setattr(s, outcome, getattr(s, outcome) + 1)
                s.max_wait = max(s.max_wait, wait)
                s.abandoned_short += outcome == "abandoned" and wait <= v.threshold
        elif ev in _COMPLETE_CALLTIME:
            talk = _num(e.data, _COMPLETE_CALLTIME[ev]) or 0.0
            bld.spread(e.agent, "talk_time", t - talk, t)
            for p in bld.periods(t):
                sa = bld.a(p, e.agent)
                sa.talk_calls += 1
                sa.talk_total += talk
            v = visits.get((e.call_id, e.queue))
            if v is not None and v.outcome == "answered" and not v.talked:
                v.talked = True
                for p in v.periods:
                    s = bld.q(p, v.queue)
                    s.talk_calls += 1
                    s.talk_total += talk
        elif ev == "RINGNOANSWER":
            for p in bld.periods(t):
                bld.a(p, e.agent).no_answer += 1
        elif ev == "DIVERT":
            for p in bld.periods(t):
                bld.q(p, e.queue).diverted += 1
        elif ev in ("AGENTLOGIN", "AGENTLOGOFF", "PAUSE", "UNPAUSE"):
            ss = sessions.setdefault(e.agent, _Session())
            if ev == "AGENTLOGIN":
                if ss.login is None:
                    ss.login, ss.pause = t, None
            elif ev == "AGENTLOGOFF":
                if ss.login is not None:
                    bld.spread(e.agent, "logged_in", ss.login, t)
                    if ss.pause is not None:
                        bld.spread(e.agent, "paused", ss.pause, t)
                elif (logged := _num(e.data, 1)) is not None and logged > 0:
                    bld.spread(e.agent, "logged_in", t - logged, t)
                ss.login = ss.pause = None
            elif ev == "PAUSE":
                if ss.login is not None and ss.pause is None:
                    ss.pause = t
            elif ss.pause is not None:  # UNPAUSE
                bld.spread(e.agent, "paused", ss.pause, t)
                ss.pause = None
    for agent, ss in sessions.items():
        if ss.login is not None:
            bld.spread(agent, "logged_in", ss.login, horizon)
            if ss.pause is not None:
                bld.spread(agent, "paused", ss.pause, horizon)
    for name in queues:
        bld.q(0, name)
    return _assemble(bld)


def _all_row(rows: list[QueueStats], start: float, end: float, threshold: float | None) -> QueueStats:
    total = QueueStats(ALL, start, end, threshold)
    for r in rows:
        total.add(r)
    return total


def _assemble(bld: _Builder) -> Report:
    by_period: dict[int, list[QueueStats]] = {}
    for (p, _), s in sorted(bld.queues.items()):
        by_period.setdefault(p, []).append(s)
    start, end = bld.bounds[0]
    day = by_period.get(0, [])
    thresholds = {r.sl_threshold for r in day}
    common = thresholds.pop() if len(thresholds) == 1 else None  # ALL's T, the same in every interval
    report = Report(start, end, bld.interval_s, [*day, _all_row(day, start, end, common)], [])
    for p in range(1, len(bld.bounds)):
        rows = [s for s in by_period.get(p, []) if s.offered or s.diverted]
        report.queue_intervals.extend([*rows, _all_row(rows, *bld.bounds[p], common)])
    for (p, _), a in sorted(bld.agents.items()):
        (report.agent_intervals if p else report.agents).append(a)
    return report


# --- loading ---------------------------------------------------------------------------------


def load_entries(log: QueueLog, start: float, end: float) -> list[QueueLogEvent]:
    """What :func:`compute` needs for ``[start, end)``: each agent's state before ``start``, the
    entries of the range, and the later entries of calls still unfinished at ``end``."""
    main = log.entries(start, end)
    unfinished: set[tuple[str, str]] = set()
    for e in main:
        if e.event == "ENTERQUEUE":
            unfinished.add((e.call_id, e.queue))
        elif e.event in _TERMINAL and e.event != "CALLBACK":
            unfinished.discard((e.call_id, e.queue))
    follow = log.call_entries({c for c, _ in unfinished}, end, end + FOLLOW_S) if unfinished else []
    return [*log.agent_state_before(start), *main, *follow]


def day_bounds(day: date) -> tuple[float, float]:
    """Epoch seconds of local midnight starting ``day`` and the next one (23 or 25 h apart on DST days)."""
    a = datetime(day.year, day.month, day.day)
    b = a + timedelta(days=1)
    return a.timestamp(), b.timestamp()


# --- output ----------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _sec(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _hms(v: float) -> str:
    s = round(v)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _sl(v: float | None) -> str:
    return "mixed" if v is None else f"{v:g}"


def _hhmm(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M")


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]], left: int = 1) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(head)]
    return [
        "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()
        for r in (head, *rows)
    ]


_QUEUE_HEAD = (
    "offered", "answered", "abandoned", "short", "timeout", "key", "vmail", "callback", "empty", "open",
    "diverted", "ans%", "T(s)", "SL1%", "SL2%", "ASA(s)", "maxwait", "AHT(s)",
)  # fmt: skip


def _queue_cells(s: QueueStats) -> tuple[str, ...]:
    counts = (
        s.offered,
        s.answered,
        s.abandoned,
        s.abandoned_short,
        s.timeout,
        s.exit_key,
        s.voicemail,
        s.callback,
        s.exit_empty,
        s.open,
        s.diverted,
    )
    return (
        *(str(c) for c in counts),
        _pct(s.answer_rate),
        _sl(s.sl_threshold),
        _pct(s.sl1),
        _pct(s.sl2),
        _sec(s.asa),
        f"{s.max_wait:.0f}",
        _sec(s.aht),
    )


def format_report(report: Report, *, intervals: bool = True) -> list[str]:
    """The report as aligned text lines: queues, optionally per interval, then agents."""
    day = datetime.fromtimestamp(report.start).date().isoformat()
    lines = [
        f"Queue report for {day} (local time)",
        "SL1 = answered within T / answered;  SL2 = answered within T / (offered - abandoned within T)",
        "short = abandoned within T;  ASA = average wait of answered calls;  maxwait = longest wait of any call",
        "AHT = average talk time (wrap-up is not logged);  occupancy = talk / (logged in - paused)",
        "",
    ]
    lines += _table(("queue", *_QUEUE_HEAD), [(s.name, *_queue_cells(s)) for s in report.queues])
    if intervals and report.interval_s:
        lines += [
            "",
            f"Per {report.interval_s // 60} min interval (by the time calls entered the queue; quiet ones left out)",
        ]
        rows = [
            (_hhmm(s.start), s.name, *_queue_cells(s))
            for s in report.queue_intervals
            if s.offered or s.diverted
        ]
        lines += _table(("from", "queue", *_QUEUE_HEAD), rows, left=2)
    lines += ["", "Agents (whole day)"]
    rows = [
        (
            s.agent,
            str(s.answered),
            str(s.no_answer),
            _hms(s.talk_time),
            _sec(s.aht),
            _hms(s.logged_in),
            _hms(s.paused),
            _pct(s.occupancy),
        )
        for s in report.agents
    ]
    head = ("agent", "answered", "noanswer", "talk", "AHT(s)", "logged in", "paused", "occupancy%")
    lines += _table(head, rows) if rows else ["no agent activity"]
    return lines


CSV_FIELDS = (
    "kind", "period_start", "period_end", "name", "offered", "answered", "abandoned", "abandoned_short",
    "timeout", "exit_key", "voicemail", "callback", "exit_empty", "open", "diverted", "answered_in_sl",
    "sl_threshold_s", "answer_rate", "sl1", "sl2", "asa_s", "max_wait_s", "aht_s", "no_answer", "talk_s",
    "logged_in_s", "paused_s", "occupancy",
)  # fmt: skip


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def _f(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


_QUEUE_COUNTS = (
    "offered", "answered", "abandoned", "abandoned_short", "timeout", "exit_key", "voicemail", "callback",
    "exit_empty", "open", "diverted", "answered_in_sl",
)  # fmt: skip


def write_csv(report: Report, out: IO[str]) -> None:
    """RFC 4180 CSV, one row per queue (kind ``queue``), ``ALL`` (kind ``total``) and agent (kind
    ``agent``), for the day then per interval. Times local ISO 8601 with offset; rates as fractions."""
    w = csv.DictWriter(out, CSV_FIELDS, lineterminator="\r\n")
    w.writeheader()
    for s in [*report.queues, *report.queue_intervals]:
        row: dict[str, Any] = {name: getattr(s, name) for name in _QUEUE_COUNTS}
        row.update(
            kind="total" if s.name == ALL else "queue", period_start=_iso(s.start), period_end=_iso(s.end),
            name=s.name, sl_threshold_s="" if s.sl_threshold is None else f"{s.sl_threshold:g}",
            answer_rate=_f(s.answer_rate), sl1=_f(s.sl1), sl2=_f(s.sl2), asa_s=_f(s.asa, 1),
            max_wait_s=_f(s.max_wait, 1), aht_s=_f(s.aht, 1),
        )  # fmt: skip
        w.writerow(row)
    for a in [*report.agents, *report.agent_intervals]:
        w.writerow(
            dict(
                kind="agent",
                period_start=_iso(a.start),
                period_end=_iso(a.end),
                name=a.agent,
                answered=a.answered,
                no_answer=a.no_answer,
                aht_s=_f(a.aht, 1),
                talk_s=_f(a.talk_time, 1),
                logged_in_s=_f(a.logged_in, 1),
                paused_s=_f(a.paused, 1),
                occupancy=_f(a.occupancy),
            )
        )


def plot(report: Report, path: Path | str) -> None:
    """PNG of all queues per interval: offered/answered/abandoned bars, SL1/SL2 lines (right axis)."""
    import matplotlib  # lazily: only --plot needs it

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = [s for s in report.queue_intervals if s.name == ALL]
    x = list(range(len(rows)))
    fig = Figure(figsize=(max(8.0, 0.35 * len(rows) + 2), 5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.27
    for i, (label, attr, color) in enumerate(
        (
            ("offered", "offered", "#9e9e9e"),
            ("answered", "answered", "#2e7d32"),
            ("abandoned", "abandoned", "#c62828"),
        )
    ):
        ax.bar(
            [v + (i - 1) * width for v in x],
            [getattr(s, attr) for s in rows],
            width,
            label=label,
            color=color,
        )
    ax.set_ylabel("calls")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    step = max(1, len(rows) // 24)
    ax.set_xticks(x[::step], [_hhmm(s.start) for s in rows][::step], rotation=45)
    ax2 = ax.twinx()
    for label, values, style in (
        ("SL1 (in T / answered)", [s.sl1 for s in rows], "-o"),
        ("SL2 (in T / (offered - short abandons))", [s.sl2 for s in rows], "--s"),
    ):
        ax2.plot(x, [math.nan if v is None else 100 * v for v in values], style, label=label, markersize=3)
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("service level %")
    day = datetime.fromtimestamp(report.start).date().isoformat()
    t = "mixed" if rows and rows[0].sl_threshold is None else f"{rows[0].sl_threshold:g} s" if rows else "-"
    ax.set_title(
        f"Calls per {(report.interval_s or 3600) // 60} min, all queues, {day} (service level T: {t})"
    )
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(handles + h2, labels + l2, loc="upper left", fontsize="small")
    fig.savefig(str(path), format="png", dpi=100)


# --- command line ----------------------------------------------------------------------------

_INTERVAL = re.compile(r"(\d+)\s*(m|min|h)")


def parse_interval(text: str) -> int:
    """``15m``, ``30m``, ``1h`` ... -> seconds (1 min to 24 h)."""
    m = _INTERVAL.fullmatch(text.strip().lower())
    seconds = 0 if m is None else int(m.group(1)) * (3600 if m.group(2) == "h" else 60)
    if not 60 <= seconds <= 86400:
        raise argparse.ArgumentTypeError(f"expected an interval like 15m, 30m or 1h, got {text!r}")
    return seconds


def parse_day(text: str, now: float | None = None) -> date:
    """``YYYY-MM-DD``, ``today`` or ``yesterday`` (local time)."""
    s = text.strip().lower()
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    if s == "today":
        return today
    if s == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(s)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date YYYY-MM-DD, today or yesterday, got {text!r}"
        ) from None


def configured_service_levels(config: Config) -> dict[str, float]:
    """Queue name -> service_level_s from the parsed queues (``config.queues``) or the raw TOML."""
    out: dict[str, float] = {}
    queues = getattr(config, "queues", None)
    if isinstance(queues, Mapping) and queues:
        for name, q in queues.items():
            level = getattr(q, "service_level_s", None)
            if isinstance(level, int | float):
                out[str(name)] = float(level)
        return out
    raw = config.raw.get("queues", {})
    if isinstance(raw, Mapping):
        for name, section in raw.items():
            level = section.get("service_level_s", DEFAULT_SL) if isinstance(section, Mapping) else DEFAULT_SL
            out[str(name)] = float(level) if isinstance(level, int | float) else DEFAULT_SL
    return out


def add_report_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """The ``report`` subcommand."""
    p = subparsers.add_parser("report", help="queue and agent statistics for one day from the queue log")
    p.add_argument("-c", "--config", required=True)
    p.add_argument(
        "--date",
        type=parse_day,
        default="today",
        metavar="DAY",
        help="YYYY-MM-DD, today (default), yesterday",
    )
    p.add_argument("--interval", type=parse_interval, metavar="LEN", help="also per interval: 15m, 30m, 1h")
    p.add_argument(
        "--sl",
        type=float,
        metavar="SECONDS",
        help=f"service-level threshold for every queue (default: each queue's service_level_s, else {DEFAULT_SL:g})",
    )
    p.add_argument(
        "--csv", nargs="?", const="-", metavar="PATH", help="CSV to PATH, or to stdout without one"
    )
    p.add_argument(
        "--plot", metavar="PNG", help="draw calls and service level per interval (needs matplotlib)"
    )
    p.set_defaults(func=_cmd_report)
    return p


def _cmd_report(args: argparse.Namespace) -> int:
    from ..cli import _load

    return run_report(args, _load(args.config))


def run_report(args: argparse.Namespace, config: Config) -> int:
    """``softswitch report``: print (or export) the statistics of ``args.date``."""
    start, end = day_bounds(args.date if isinstance(args.date, date) else parse_day(args.date))
    levels = {} if args.sl is not None else configured_service_levels(config)
    default_sl = DEFAULT_SL if args.sl is None else float(args.sl)
    interval = args.interval or (3600 if args.plot else None)
    entries: list[QueueLogEvent] = []
    path = db_path(config.data_dir)
    if path.exists():
        try:
            with QueueLog(config.data_dir, text_file=False) as log:
                entries = load_entries(log, start, end)
        except (QueueLogError, sqlite3.Error) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 1
    report = compute(
        entries,
        start,
        end,
        interval_s=interval,
        service_levels=levels,
        default_sl=default_sl,
        queues=_queue_names(config),
        now=time.time(),
    )
    plotted = report
    if args.interval is None:  # intervals computed only for the plot
        report = dataclasses.replace(report, interval_s=None, queue_intervals=[], agent_intervals=[])
    if args.csv == "-":
        write_csv(report, sys.stdout)
    else:
        if args.csv:
            with open(args.csv, "w", newline="", encoding="utf-8") as f:
                write_csv(report, f)
        print("\n".join(format_report(report)))
    if args.plot:
        try:
            plot(plotted, args.plot)
        except ImportError:
            print("error: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 1
    return 0


def _queue_names(config: Config) -> list[str]:
    queues: Any = getattr(config, "queues", None) or config.raw.get("queues", {})
    return [str(n) for n in queues] if isinstance(queues, Mapping) else []
