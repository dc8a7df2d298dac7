"""ACD core routing bench: 10,000 queued calls, 1,000 agents, random availability events, in-process.

    python -m bench.acd [--calls 10000] [--agents 1000] [--queues 4] [--events 100000] [--seed 1]
                        [--strategy NAME ...] [--json]

For each strategy (all seven unless ``--strategy``): ``--queues`` queues (skills s0..), every agent
has one or two of the skills (levels 1..9), registered and logged in; ``--calls`` callers join (10 %
VIP), so about ``--agents`` of them ring at once and the rest wait. Then a discrete-event simulation
(fake clock; see ``Sim``) drives the sans-I/O core for ``--events`` core calls: answers after a ring
delay, call ends, no-answers, pauses/unpauses, abandons, new joins that keep the population at
``--calls``, and handle_timer whenever a core timer is due (wrap-up ends, max-wait expiry, ring
backstops). Every core call is timed
with ``time.perf_counter_ns``; a "routing decision" is a RingAgents event, and a core call that
produced at least one is a decision-producing call. Printed per strategy: decisions/s (decisions
over the time spent inside the core), p50/p99/max of decision-producing calls and of all core
calls and the calls waiting at the end. The GC is tuned as in the switch (``softswitch.runtime``);
its young collections (~10 ms over this heap) set the max unless ``--no-gc``.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import random
import sys
import time
from collections import Counter
from typing import Any

from softswitch.acd import (
    Acd,
    AgentSettings,
    AgentState,
    AgentStateChanged,
    CallTimedOut,
    Event,
    QueueLogEntry,
    QueueSettings,
    RingAgents,
    Strategy,
)
from softswitch.runtime import tune_gc

TICK_S = 0.02


def percentile(sorted_ns: list[int], p: float) -> float:
    if not sorted_ns:
        return 0.0
    return sorted_ns[min(len(sorted_ns) - 1, int(p / 100 * len(sorted_ns)))] / 1000.0


class Sim:
    """A discrete-event simulation around one core; the bench's own bookkeeping is not timed.

    Scheduled actions: an agent answers 1-8 s after its phone starts ringing (8 % never do: the
    core's ring backstop or a no-answer after 15 s), talks 20-300 s; a caller who still waits
    after an exponential patience (mean 20 min) hangs up; every caller who leaves is replaced by
    a new one within a second (population ``--calls``); every ~2 s a random agent
    pauses for 1-5 min (pending until its call ends). The clock jumps to the next scheduled action or the core's next timer.
    """

    def __init__(self, strategy: Strategy, args: argparse.Namespace) -> None:
        self.rng = random.Random(args.seed)
        skills = [f"s{i}" for i in range(args.queues)]
        queues = [
            QueueSettings(f"q{i}", s, strategy=strategy, wrapup_s=10.0, max_wait_s=1800.0, max_misses=3)
            for i, s in enumerate(skills)
        ]
        agents = []
        for i in range(args.agents):
            mine = self.rng.sample(skills, self.rng.choice((1, 2)))
            agents.append(
                AgentSettings(f"{5000 + i}", f"{5000 + i}", {s: self.rng.randint(1, 9) for s in mine})
            )
        self.acd = Acd(queues, agents, rng=random.Random(args.seed + 1))
        self.queues = [q.name for q in queues]
        self.agent_ids = [a.id for a in agents]
        self.target = args.calls
        self.now = 0.0
        self.n = 0
        self.actions: list[tuple[float, int, str, str, str]] = []  # (when, n, kind, call, agent)
        self.k = 0
        self.ringing: dict[str, str] = {}  # agent -> call
        self.times: list[int] = []  # every core call
        self.decision_times: list[int] = []  # core calls that produced RingAgents
        self.decisions = 0
        self.mix: Counter[str] = Counter()

    def at(self, when: float, kind: str, call: str = "", agent: str = "") -> None:
        self.k += 1
        heapq.heappush(self.actions, (when, self.k, kind, call, agent))

    def call(self, kind: str, fn: Any, *args: Any, **kw: Any) -> None:
        t0 = time.perf_counter_ns()
        events: list[Event] = fn(*args, **kw)
        dt = time.perf_counter_ns() - t0
        self.times.append(dt)
        rings = 0
        for e in events:
            if type(e) is RingAgents:
                rings += 1
        if rings:
            self.decisions += rings
            self.decision_times.append(dt)
        self.mix[kind] += 1
        self.track(events)

    def track(self, events: list[Event]) -> None:
        rng = self.rng
        for e in events:
            if isinstance(e, AgentStateChanged):
                if e.old is AgentState.RINGING:
                    self.ringing.pop(e.agent_id, None)
            elif isinstance(e, RingAgents):
                for a in e.agents:
                    self.ringing[a] = e.call_id
                a = e.agents[rng.randrange(len(e.agents))]  # ring_all: one of them picks up
                if rng.random() < 0.92:
                    self.at(self.now + rng.uniform(1.0, 8.0), "answer", e.call_id, a)
                elif rng.random() < 0.5:
                    self.at(self.now + 15.0, "no_answer", e.call_id, a)
            elif isinstance(e, CallTimedOut):
                self.at(self.now + rng.random(), "join")
            elif isinstance(e, QueueLogEntry) and e.event == "CONNECT":
                self.at(self.now + rng.uniform(20.0, 300.0), "end", e.call_id)

    def join(self) -> None:
        self.n += 1
        call = f"c{self.n}"
        q = self.queues[self.rng.randrange(len(self.queues))]
        self.at(self.now + self.rng.expovariate(1 / 1200.0), "abandon", call)
        self.call("join", self.acd.join, call, q, self.now, vip=self.rng.random() < 0.1, caller="5550000")

    def setup(self) -> None:
        for a in self.agent_ids:
            self.acd.set_registered(a, True, self.now)
            self.track(self.acd.login(a, self.now))
        for _ in range(self.target):
            self.join()
        self.at(self.now + 2.0, "pause")

    def step(self) -> None:
        rng = self.rng
        due = self.acd.next_timer()
        if due is not None and (not self.actions or due <= self.actions[0][0]):
            self.now = max(self.now, due)
            self.call("timer", self.acd.handle_timer, self.now)
            return
        when, _, kind, call, agent = heapq.heappop(self.actions)
        self.now = max(self.now, when)
        if kind == "answer" or kind == "no_answer":
            if self.ringing.get(agent) == call:
                self.call(kind, self.acd.ring_result, call, agent, self.now, answered=kind == "answer")
        elif kind == "end":
            self.call(
                "end", self.acd.call_ended, call, self.now, by="caller" if rng.random() < 0.7 else "agent"
            )
            self.at(self.now + rng.random(), "join")
        elif kind == "abandon":
            if self.acd.position(call) is not None:
                self.call("abandon", self.acd.leave, call, self.now)
                self.at(self.now + rng.random(), "join")
        elif kind == "join":
            self.join()
        elif kind == "pause":
            self.at(self.now + rng.expovariate(0.5), "pause")
            a = self.agent_ids[rng.randrange(len(self.agent_ids))]  # on a call: applies when it ends
            self.call("pause", self.acd.pause, a, self.now, "break")
            self.at(self.now + rng.uniform(60.0, 300.0), "unpause", "", a)
        elif kind == "unpause":
            self.call("unpause", self.acd.unpause, agent, self.now)


def run(strategy: Strategy, args: argparse.Namespace) -> dict[str, Any]:
    sim = Sim(strategy, args)
    sim.setup()
    tune_gc()  # as the switch does (softswitch.runtime)
    if args.no_gc:
        gc.disable()
    sim.times.clear()
    sim.decision_times.clear()
    sim.decisions = 0
    sim.mix.clear()
    while len(sim.times) < args.events:
        sim.step()
    gc.enable()
    if args.check:
        sim.acd.check_invariants()
    total_ns = sum(sim.times)
    dec = sorted(sim.decision_times)
    every = sorted(sim.times)
    snap = sim.acd.snapshot()["queues"]
    return {
        "strategy": strategy.value,
        "core_calls": len(every),
        "decisions": sim.decisions,
        "decisions_per_s": sim.decisions / (total_ns / 1e9) if total_ns else 0.0,
        "decision_us": {
            "p50": percentile(dec, 50),
            "p99": percentile(dec, 99),
            "max": dec[-1] / 1000 if dec else 0,
        },
        "all_us": {"p50": percentile(every, 50), "p99": percentile(every, 99), "max": every[-1] / 1000},
        "waiting_end": sum(q["waiting"] for q in snap.values()),
        "simulated_s": sim.now,
        "mix": dict(sim.mix),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.acd", description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--agents", type=int, default=1_000)
    ap.add_argument("--queues", type=int, default=4)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--strategy", action="append", choices=[s.value for s in Strategy])
    ap.add_argument("--check", action="store_true", help="check the core's invariants at the end")
    ap.add_argument(
        "--no-gc", action="store_true", help="disable the cyclic GC while measuring (its pauses set the max)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    strategies = [Strategy(s) for s in args.strategy] if args.strategy else list(Strategy)
    print(
        f"ACD core: {args.calls} calls, {args.agents} agents, {args.queues} queues, {args.events} events, "
        f"seed {args.seed}, Python {sys.version.split()[0]}",
        file=sys.stderr,
    )
    results = []
    if not args.json:
        print(f"{'strategy':<16} {'decisions/s':>12} {'decisions':>10} {'p50 µs':>8} {'p99 µs':>8} {'max µs':>8}"
              f"   {'all calls p50/p99/max µs':>24} {'waiting':>8}")  # fmt: skip
    for s in strategies:
        r = run(s, args)
        results.append(r)
        if not args.json:
            d, a = r["decision_us"], r["all_us"]
            print(
                f"{r['strategy']:<16} {r['decisions_per_s']:>12,.0f} {r['decisions']:>10,} {d['p50']:>8.1f} "
                f"{d['p99']:>8.1f} {d['max']:>8.0f}   {a['p50']:>7.1f} / {a['p99']:>6.1f} / {a['max']:>6.0f} "
                f"{r['waiting_end']:>8,}",
                flush=True,
            )
    if args.json:
        print(json.dumps(results, indent=2))
    ok = all(r["decision_us"]["p99"] < 200 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
