"""The sans-I/O ACD core driven with a fake clock: strategies, priorities, misses, timers, EWT, log."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence

import pytest

from softswitch.acd import (
    Acd,
    AgentSettings,
    AgentState,
    AgentStateChanged,
    CallTimedOut,
    CancelRing,
    Event,
    Joined,
    JoinRefused,
    QueueLogEntry,
    QueueSettings,
    RingAgents,
    Strategy,
)
from softswitch.acd.core import RING_GRACE_S

AV, RINGING, ON_CALL, WRAP_UP, PAUSED, OUT = (
    AgentState.AVAILABLE,
    AgentState.RINGING,
    AgentState.ON_CALL,
    AgentState.WRAP_UP,
    AgentState.PAUSED,
    AgentState.LOGGED_OUT,
)


def make(
    n: int = 3,
    strategy: Strategy = Strategy.LONGEST_IDLE,
    *,
    skills: Sequence[Mapping[str, int]] | None = None,
    rng: random.Random | None = None,
    history: int = 50,
    login: bool = True,
    **queue: object,
) -> Acd:
    """Queue "q" (skill "s"), agents a1..aN (extensions 2001..), registered, logged in at t=1, 2, ..."""
    qs = QueueSettings("q", "s", strategy=strategy, **queue)  # type: ignore[arg-type]
    agents = [
        AgentSettings(f"a{i}", f"{2000 + i}", skills[i - 1] if skills else {"s": 1}) for i in range(1, n + 1)
    ]
    acd = Acd([qs], agents, rng=rng, history=history)
    for a in agents:
        assert acd.set_registered(a.extension, True, 0.0) == []
    if login:
        for i, a in enumerate(agents, 1):
            acd.login(a.id, float(i))
    acd.check_invariants()
    return acd


def rings(events: Iterable[Event]) -> list[RingAgents]:
    return [e for e in events if isinstance(e, RingAgents)]


def rung(events: Iterable[Event]) -> list[str]:
    """The agents rung, in order, flattened."""
    return [a for r in rings(events) for a in r.agents]


def logs(
    events: Iterable[Event], *, agents: bool = False, rings: bool = False
) -> list[tuple[str, str, tuple[str, ...]]]:
    """(event, agent, data) of the queue-log entries (caller events only unless ``agents``; the
    RINGAGENT of every ring only with ``rings``)."""
    return [
        (e.event, e.agent, e.data)
        for e in events
        if isinstance(e, QueueLogEntry)
        and (agents or e.call_id != "NONE")
        and (rings or e.event != "RINGAGENT")
    ]


def states(events: Iterable[Event]) -> list[tuple[str, AgentState, str]]:
    return [(e.agent_id, e.new, e.reason) for e in events if isinstance(e, AgentStateChanged)]


def serve(
    acd: Acd, call_id: str, agent: str, answer_at: float, end_at: float, *, by: str = "caller"
) -> list[Event]:
    """Answer the ring of ``call_id`` at ``agent`` and end the call."""
    ev = acd.ring_result(call_id, agent, answer_at, answered=True)
    acd.check_invariants()
    ev += acd.call_ended(call_id, end_at, by=by)
    acd.check_invariants()
    return ev


# --- strategies -----------------------------------------------------------------------------------


def test_longest_idle_rings_the_agent_idle_longest_and_a_finished_call_resets_idleness() -> None:
    acd = make(3, wrapup_s=0.0)
    assert rung(acd.join("c1", "q", 10.0)) == ["a1"]  # logged in first
    serve(acd, "c1", "a1", 11.0, 20.0)
    assert rung(acd.join("c2", "q", 21.0)) == ["a2"]
    assert rung(acd.join("c3", "q", 22.0)) == ["a3"]
    assert rung(acd.join("c4", "q", 23.0)) == ["a1"]  # idle since 20
    acd.check_invariants()


def test_round_robin_cycles_through_members_in_order() -> None:
    acd = make(3, Strategy.ROUND_ROBIN, wrapup_s=0.0, login=False)
    for t, a in enumerate(("a3", "a1", "a2")):  # login order does not matter
        acd.login(a, float(t))
    order = []
    for i in range(7):
        ev = acd.join(f"c{i}", "q", 10.0 + i)
        (agent,) = rung(ev)
        order.append(agent)
        serve(acd, f"c{i}", agent, 10.5 + i, 10.6 + i)
    assert order == ["a1", "a2", "a3", "a1", "a2", "a3", "a1"]


def test_round_robin_skips_a_busy_agent_and_comes_back_to_it() -> None:
    acd = make(3, Strategy.ROUND_ROBIN, wrapup_s=0.0)
    assert rung(acd.join("c1", "q", 10.0)) == ["a1"]
    acd.ring_result("c1", "a1", 11.0, answered=True)  # a1 stays on the call
    assert rung(acd.join("c2", "q", 12.0)) == ["a2"]
    serve(acd, "c2", "a2", 12.5, 13.0)
    assert rung(acd.join("c3", "q", 14.0)) == ["a3"]
    serve(acd, "c3", "a3", 14.5, 15.0)
    assert rung(acd.join("c4", "q", 16.0)) == ["a2"]  # a1 still on c1
    acd.call_ended("c1", 17.0, by="agent")
    acd.check_invariants()
    serve(acd, "c4", "a2", 17.5, 18.0)
    # least recently rung first: a1 (c1), then a3 (c3), then a2 (c4)
    assert rung(acd.join("c5", "q", 19.0)) == ["a1"]
    serve(acd, "c5", "a1", 19.5, 20.0)
    assert rung(acd.join("c6", "q", 21.0)) == ["a3"]
    serve(acd, "c6", "a3", 21.5, 22.0)
    assert rung(acd.join("c7", "q", 23.0)) == ["a2"]


def test_fewest_calls_rings_the_agent_with_fewest_answered_calls_then_longest_idle() -> None:
    acd = make(3, Strategy.FEWEST_CALLS, wrapup_s=0.0)
    t = 10.0
    for agent, n in (("a1", 2), ("a2", 1)):
        for _ in range(n):
            acd.pause("a3", t)  # keep the others out of the way
            others = [a for a in ("a1", "a2") if a != agent]
            for o in others:
                acd.pause(o, t)
            ev = acd.join(f"x{t}", "q", t)
            assert rung(ev) == [agent]
            serve(acd, f"x{t}", agent, t + 1, t + 2)
            for o in [*others, "a3"]:
                acd.unpause(o, t + 3)
            t += 10
    snap = acd.snapshot()["agents"]
    assert (snap["a1"]["calls"], snap["a2"]["calls"], snap["a3"]["calls"]) == (2, 1, 0)
    assert rung(acd.join("c1", "q", 100.0)) == ["a3"]
    assert rung(acd.join("c2", "q", 101.0)) == ["a2"]
    assert rung(acd.join("c3", "q", 102.0)) == ["a1"]


def test_fewest_calls_ties_go_to_the_longest_idle() -> None:
    acd = make(3, Strategy.FEWEST_CALLS, wrapup_s=0.0)
    assert rung(acd.join("c1", "q", 10.0)) == ["a1"]
    assert rung(acd.join("c2", "q", 11.0)) == ["a2"]


def test_least_talk_time_rings_the_agent_with_least_talk() -> None:
    acd = make(3, Strategy.LEAST_TALK_TIME, wrapup_s=0.0)
    assert rung(acd.join("c1", "q", 10.0)) == ["a1"]
    assert rung(acd.join("c2", "q", 10.0)) == ["a2"]
    assert rung(acd.join("c3", "q", 10.0)) == ["a3"]
    acd.ring_result("c1", "a1", 11.0, answered=True)
    acd.ring_result("c2", "a2", 11.0, answered=True)
    acd.ring_result("c3", "a3", 11.0, answered=True)
    acd.call_ended("c2", 41.0, by="caller")  # a2: 30 s (becomes free first)
    acd.call_ended("c3", 61.0, by="caller")  # a3: 50 s
    acd.call_ended("c1", 111.0, by="caller")  # a1: 100 s
    assert rung(acd.join("c4", "q", 200.0)) == ["a2"]
    assert rung(acd.join("c5", "q", 200.0)) == ["a3"]
    assert rung(acd.join("c6", "q", 200.0)) == ["a1"]
    acd.check_invariants()


def test_skills_rings_highest_level_first_then_longest_idle() -> None:
    acd = make(3, Strategy.SKILLS, skills=[{"s": 3}, {"s": 7}, {"s": 7}], login=False)
    acd.login("a1", 1.0)
    acd.login("a3", 2.0)
    acd.login("a2", 3.0)
    assert rung(acd.join("c1", "q", 10.0)) == ["a3"]  # level 7, idle longer than a2
    assert rung(acd.join("c2", "q", 11.0)) == ["a2"]
    assert rung(acd.join("c3", "q", 12.0)) == ["a1"]


def test_random_with_a_seeded_generator_picks_the_smallest_draw() -> None:
    draws = random.Random(7)
    keys = {f"a{i}": draws.random() for i in range(1, 6)}  # one draw per agent, in login order
    expected = sorted(keys, key=keys.__getitem__)
    acd = make(5, Strategy.RANDOM, rng=random.Random(7))
    got = [rung(acd.join(f"c{i}", "q", 10.0 + i))[0] for i in range(5)]
    assert got == expected
    # the same seed gives the same choice; other seeds give other first choices
    assert rung(make(5, Strategy.RANDOM, rng=random.Random(7)).join("c", "q", 10.0)) == got[:1]
    firsts = {rung(make(5, Strategy.RANDOM, rng=random.Random(s)).join("c", "q", 10.0))[0] for s in range(30)}
    assert len(firsts) >= 3


def test_ring_all_rings_every_eligible_member_and_cancels_the_others_on_answer() -> None:
    acd = make(4, Strategy.RING_ALL)
    acd.pause("a3", 5.0, "lunch")
    acd.set_registered("2004", False, 5.0)
    ev = acd.join("c1", "q", 10.0)
    (r,) = rings(ev)
    assert set(r.agents) == {"a1", "a2"} and set(r.extensions) == {"2001", "2002"}
    ev = acd.ring_result("c1", "a2", 12.0, answered=True)
    assert [(e.agent_id, e.extension) for e in ev if isinstance(e, CancelRing)] == [("a1", "2001")]
    assert acd.agent_state("a1") is AV and acd.agent_state("a2") is ON_CALL
    acd.check_invariants()


def test_ring_all_no_answer_from_all_counts_a_miss_each_and_rings_again() -> None:
    acd = make(2, Strategy.RING_ALL, max_misses=2)
    acd.join("c1", "q", 10.0)
    assert acd.ring_result("c1", "a1", 25.0, answered=False) != []
    assert acd.agent_state("a1") is AV  # nothing re-rung while a2 still rings
    ev = acd.ring_result("c1", "a2", 25.0, answered=False)
    assert sorted(rung(ev)) == ["a1", "a2"]  # both missed: offered again to everyone eligible
    ev = acd.ring_result("c1", "a1", 40.0, answered=False) + acd.ring_result("c1", "a2", 40.0, answered=False)
    assert ("a1", PAUSED, "no-answer") in states(ev) and ("a2", PAUSED, "no-answer") in states(ev)
    assert acd.position("c1") == 1
    acd.check_invariants()


# --- priorities -----------------------------------------------------------------------------------


def test_vip_callers_overtake_and_each_class_is_fifo() -> None:
    acd = make(1, login=False)
    order = [("n1", False), ("n2", False), ("v1", True), ("n3", False), ("v2", True)]
    pos = {}
    for t, (cid, vip) in enumerate(order):
        (j,) = [e for e in acd.join(cid, "q", 10.0 + t, vip=vip) if isinstance(e, Joined)]
        pos[cid] = j.position
    assert pos == {"n1": 1, "n2": 2, "v1": 1, "n3": 4, "v2": 2}
    assert [acd.position(c) for c in ("v1", "v2", "n1", "n2", "n3")] == [1, 2, 3, 4, 5]
    served = []
    acd.login("a1", 20.0)
    for i in range(5):
        call = acd.snapshot()["agents"]["a1"]["call"]
        served.append(call)
        acd.ring_result(call, "a1", 30.0 + i * 10, answered=True)
        acd.call_ended(call, 31.0 + i * 10, by="caller")
        acd.handle_timer(45.0 + i * 10)
        acd.check_invariants()
    assert served == ["v1", "v2", "n1", "n2", "n3"]


def test_vip_priority_off_keeps_plain_fifo() -> None:
    acd = make(1, login=False, vip_priority=False)
    acd.join("n1", "q", 10.0)
    acd.join("v1", "q", 11.0, vip=True)
    assert (acd.position("n1"), acd.position("v1")) == (1, 2)
    assert [r.call_id for r in rings(acd.login("a1", 12.0))] == ["n1"]
    assert acd.position("n1") is None and acd.position("v1") == 1


def test_an_agent_free_for_two_queues_takes_the_vip_then_the_earliest_caller() -> None:
    qs = [QueueSettings("qa", "a"), QueueSettings("qb", "b")]
    acd = Acd(qs, [AgentSettings("x", "3000", {"a": 1, "b": 1})])
    acd.set_registered("3000", True, 0.0)
    acd.join("b1", "qb", 1.0)
    acd.join("a1", "qa", 2.0)
    acd.join("a2", "qa", 3.0, vip=True)
    ev = acd.login("x", 4.0)
    assert [(r.call_id, r.queue) for r in rings(ev)] == [("a2", "qa")]
    serve(acd, "a2", "x", 5.0, 6.0)
    ev = acd.handle_timer(16.0)
    assert [r.call_id for r in rings(ev)] == ["b1"]  # joined before a1
    acd.check_invariants()


# --- no answer, misses, pause, logout, registration -------------------------------------------------


def test_no_answer_rings_the_next_agent_and_logs_ringnoanswer() -> None:
    acd = make(3, ring_timeout_s=15.0)
    acd.join("c1", "q", 10.0)
    ev = acd.ring_result("c1", "a1", 25.0, answered=False)
    assert logs(ev) == [("RINGNOANSWER", "a1", ("15000",))]
    assert rung(ev) == ["a2"]
    assert acd.agent_state("a1") is AV
    acd.check_invariants()


def test_an_agent_who_missed_is_not_offered_the_call_again_while_another_is_eligible() -> None:
    acd = make(3)
    acd.join("c1", "q", 10.0)
    assert rung(acd.ring_result("c1", "a1", 12.0, answered=False)) == ["a2"]
    assert rung(acd.ring_result("c1", "a2", 14.0, answered=False)) == ["a3"]
    # everyone eligible missed it: the best of them is offered it again
    assert rung(acd.ring_result("c1", "a3", 16.0, answered=False)) == ["a1"]
    acd.check_invariants()


def test_auto_pause_after_max_consecutive_misses_and_an_answer_resets_the_count() -> None:
    acd = make(1, max_misses=3, wrapup_s=0.0)
    acd.join("c1", "q", 10.0)
    acd.ring_result("c1", "a1", 12.0, answered=False)
    acd.ring_result("c1", "a1", 14.0, answered=False, busy=True)  # busy counts as a miss too
    serve(acd, "c1", "a1", 15.0, 20.0)  # answered: count reset
    acd.join("c2", "q", 30.0)
    t = 30.0
    for _ in range(2):
        t += 15
        ev = acd.ring_result("c2", "a1", t, answered=False)
        assert acd.agent_state("a1") is RINGING  # offered again (the only agent)
    ev = acd.ring_result("c2", "a1", t + 15, answered=False)
    assert acd.agent_state("a1") is PAUSED
    assert ("a1", PAUSED, "no-answer") in states(ev)
    assert ("PAUSE", "a1", ("no-answer",)) in logs(ev, agents=True)
    assert rung(ev) == [] and acd.position("c2") == 1
    assert acd.snapshot()["queues"]["q"]["staffed"] == 0
    ev = acd.unpause("a1", 100.0)
    assert rung(ev) == ["a1"]
    assert acd.snapshot()["agents"]["a1"]["misses"] == 0
    acd.check_invariants()


def test_unregistered_agents_are_never_rung_and_not_staffed() -> None:
    acd = make(2)
    acd.set_registered("2001", False, 5.0)
    acd.set_registered("2002", False, 5.0)
    ev = acd.join("c1", "q", 10.0)
    assert rung(ev) == []
    (j,) = [e for e in ev if isinstance(e, Joined)]
    assert j.expected_wait is None
    assert acd.snapshot()["queues"]["q"]["staffed"] == 0
    assert acd.snapshot()["agents"]["a1"]["registered"] is False
    assert rung(acd.set_registered("2002", True, 11.0)) == ["a2"]
    # unregistered while ringing: the ring is withdrawn, no miss, the caller keeps its place
    ev = acd.set_registered("2002", False, 12.0)
    assert [e.agent_id for e in ev if isinstance(e, CancelRing)] == ["a2"]
    assert acd.position("c1") == 1 and acd.snapshot()["agents"]["a2"]["misses"] == 0
    assert acd.set_registered("9999", True, 12.0) == []  # not an agent's extension
    acd.check_invariants()


def test_wrap_up_ends_by_timer_and_the_agent_takes_the_next_caller() -> None:
    acd = make(1, wrapup_s=10.0)
    acd.join("c1", "q", 10.0)
    acd.join("c2", "q", 11.0)
    ev = serve(acd, "c1", "a1", 12.0, 50.0)
    assert ("a1", WRAP_UP, "") in states(ev)
    assert acd.next_timer() == 60.0
    assert acd.handle_timer(59.9) == []
    ev = acd.handle_timer(60.0)
    assert ("a1", AV, "") in states(ev) and [r.call_id for r in rings(ev)] == ["c2"]
    acd.check_invariants()


def test_pause_while_on_call_applies_when_the_call_ends() -> None:
    acd = make(1, wrapup_s=10.0)
    acd.join("c1", "q", 10.0)
    acd.ring_result("c1", "a1", 11.0, answered=True)
    assert acd.pause("a1", 20.0, "break") == []
    assert acd.agent_state("a1") is ON_CALL
    acd.check_invariants()
    acd.join("c2", "q", 21.0)
    ev = acd.call_ended("c1", 30.0, by="agent")
    assert states(ev) == [("a1", PAUSED, "break")] and rung(ev) == []
    assert ("PAUSE", "a1", ("break",)) in logs(ev, agents=True)
    acd.check_invariants()
    # a pending pause is cancelled by unpause
    ev = acd.unpause("a1", 40.0)
    assert [r.call_id for r in rings(ev)] == ["c2"]
    acd.ring_result("c2", "a1", 41.0, answered=True)
    acd.pause("a1", 42.0)
    acd.unpause("a1", 43.0)
    assert states(acd.call_ended("c2", 50.0, by="caller")) == [("a1", WRAP_UP, "")]


def test_logout_while_ringing_withdraws_the_ring_and_the_next_agent_is_rung() -> None:
    acd = make(2)
    acd.join("c1", "q", 10.0)
    ev = acd.logout("a1", 11.0)
    assert [(e.call_id, e.agent_id) for e in ev if isinstance(e, CancelRing)] == [("c1", "a1")]
    assert ("AGENTLOGOFF", "a1", ("2001", "10")) in logs(ev, agents=True)
    assert rung(ev) == ["a2"] and acd.agent_state("a1") is OUT
    assert not any(e[0] == "RINGNOANSWER" for e in logs(ev))
    acd.check_invariants()


def test_logout_on_call_applies_at_the_end_and_login_cancels_it() -> None:
    acd = make(1, wrapup_s=5.0)
    acd.join("c1", "q", 10.0)
    acd.ring_result("c1", "a1", 11.0, answered=True)
    assert acd.logout("a1", 12.0) == [] and acd.agent_state("a1") is ON_CALL
    ev = acd.call_ended("c1", 20.0, by="caller")
    assert states(ev) == [("a1", OUT, "")]
    assert acd.next_timer() is None
    acd.login("a1", 30.0)
    acd.join("c2", "q", 31.0)
    acd.ring_result("c2", "a1", 32.0, answered=True)
    acd.logout("a1", 33.0)
    assert acd.login("a1", 34.0) == []  # cancels the pending logout
    assert states(acd.call_ended("c2", 40.0, by="caller")) == [("a1", WRAP_UP, "")]
    acd.check_invariants()


def test_agent_events_are_logged_with_queue_and_call_none() -> None:
    acd = make(1, login=False)
    ev = acd.login("a1", 100.0)
    ev += acd.login("a1", 101.0)  # no-op
    ev += acd.pause("a1", 110.0, "lunch")
    ev += acd.pause("a1", 111.0, "lunch")  # no-op
    ev += acd.unpause("a1", 120.0)
    ev += acd.logout("a1", 160.4)
    entries = [e for e in ev if isinstance(e, QueueLogEntry)]
    assert [(e.call_id, e.queue, e.agent, e.event, e.data) for e in entries] == [
        ("NONE", "NONE", "a1", "AGENTLOGIN", ("2001",)),
        ("NONE", "NONE", "a1", "PAUSE", ("lunch",)),
        ("NONE", "NONE", "a1", "UNPAUSE", ("",)),
        ("NONE", "NONE", "a1", "AGENTLOGOFF", ("2001", "60")),
    ]
    assert [(s.old, s.new, s.at) for s in ev if isinstance(s, AgentStateChanged)] == [
        (OUT, AV, 100.0),
        (AV, PAUSED, 110.0),
        (PAUSED, AV, 120.0),
        (AV, OUT, 160.4),
    ]
    with pytest.raises(KeyError):
        acd.login("nobody", 1.0)


# --- timers, exits, refusals ------------------------------------------------------------------------


def test_max_wait_times_the_caller_out_to_the_on_timeout_target() -> None:
    acd = make(0, max_wait_s=60.0, on_timeout="voicemail:sales")
    acd.join("c1", "q", 100.0)
    acd.join("c2", "q", 110.0)
    assert acd.next_timer() == 160.0
    ev = acd.handle_timer(160.0)
    assert [e for e in ev if isinstance(e, CallTimedOut)] == [CallTimedOut("c1", "q", "voicemail:sales")]
    assert logs(ev) == [("EXITWITHTIMEOUT", "NONE", ("1", "1", "60"))]
    assert acd.position("c2") == 1 and acd.next_timer() == 170.0
    acd.check_invariants()


def test_max_wait_passing_while_an_agent_rings_ends_when_the_ring_fails() -> None:
    acd = make(2, max_wait_s=60.0, ring_timeout_s=90.0)
    acd.logout("a2", 5.0)
    acd.join("c1", "q", 100.0)
    assert acd.handle_timer(160.0) == []  # ringing a1: let the ring finish
    ev = acd.ring_result("c1", "a1", 161.0, answered=False)
    assert any(isinstance(e, CallTimedOut) for e in ev) and rung(ev) == []
    assert acd.position("c1") is None
    acd.check_invariants()


def test_ring_backstop_when_the_service_never_reports_the_ring() -> None:
    acd = make(2, ring_timeout_s=15.0)
    acd.join("c1", "q", 10.0)
    assert acd.next_timer() == 10.0 + 15.0 + RING_GRACE_S
    ev = acd.handle_timer(10.0 + 15.0 + RING_GRACE_S)
    assert [e.agent_id for e in ev if isinstance(e, CancelRing)] == ["a1"]
    assert logs(ev)[0] == ("RINGNOANSWER", "a1", ("17000",))
    assert rung(ev) == ["a2"]
    assert acd.ring_result("c1", "a1", 30.0, answered=False) == []  # stale
    acd.check_invariants()


def test_join_empty_false_refuses_when_nobody_is_logged_in_with_a_registered_phone() -> None:
    acd = make(2, join_empty=False, login=False)
    ev = acd.join("c1", "q", 10.0, caller="555")
    assert ev[0] == JoinRefused("c1", "q", "empty")
    assert logs(ev) == [("ENTERQUEUE", "NONE", ("", "555")), ("EXITEMPTY", "NONE", ("1", "1", "0"))]
    acd.login("a1", 11.0)
    acd.set_registered("2001", False, 11.0)
    assert isinstance(acd.join("c2", "q", 12.0)[0], JoinRefused)  # logged in, phone not registered
    acd.set_registered("2001", True, 13.0)
    acd.pause("a1", 13.0)
    assert isinstance(acd.join("c3", "q", 14.0)[0], Joined)  # paused agents are logged in
    acd.check_invariants()


def test_divert_by_calls_per_agent_ratio() -> None:
    acd = make(2, divert_calls_per_agent=1.0)
    for c, a in (("c1", "a1"), ("c2", "a2")):
        acd.join(c, "q", 10.0)
        acd.ring_result(c, a, 11.0, answered=True)
    assert isinstance(acd.join("w1", "q", 12.0)[0], Joined)  # 1/2
    assert isinstance(acd.join("w2", "q", 13.0)[0], Joined)  # 2/2
    ev = acd.join("w3", "q", 14.0)  # 3/2 > 1
    assert ev == [
        JoinRefused("w3", "q", "ratio"),
        QueueLogEntry(14.0, "w3", "q", "NONE", "DIVERT", ("ratio",)),
    ]
    acd.check_invariants()


def test_divert_by_expected_wait() -> None:
    acd = make(2, divert_wait_s=100.0, default_handle_s=180.0)
    for c, a in (("c1", "a1"), ("c2", "a2")):
        acd.join(c, "q", 10.0)
        acd.ring_result(c, a, 11.0, answered=True)
    ev = acd.join("w1", "q", 12.0)
    assert ev[0] == Joined("w1", "q", 1, 90.0)  # 1 * 180 / 2
    ev = acd.join("w2", "q", 13.0)  # 2 * 180 / 2 = 180 > 100
    assert ev[0] == JoinRefused("w2", "q", "wait") and logs(ev) == [("DIVERT", "NONE", ("wait",))]
    # a VIP goes ahead of w1: position 1, 90 s: admitted
    assert acd.join("v1", "q", 14.0, vip=True)[0] == Joined("v1", "q", 1, 90.0)
    acd.check_invariants()


# --- expected wait ----------------------------------------------------------------------------------


def test_expected_wait_per_position_from_recent_handle_times() -> None:
    acd = make(2, wrapup_s=10.0, default_handle_s=180.0, history=3)
    # handle times (talk + wrap-up): 60, 120
    acd.join("h1", "q", 0.0)
    acd.join("h2", "q", 0.0)
    serve(acd, "h1", "a1", 0.0, 50.0)
    serve(acd, "h2", "a2", 0.0, 110.0)
    acd.handle_timer(200.0)
    # both agents busy again, three callers waiting
    for c, a in (("b1", "a1"), ("b2", "a2")):
        acd.join(c, "q", 200.0)
        acd.ring_result(c, a, 200.0, answered=True)
    for i, c in enumerate(("w1", "w2", "w3")):
        (j,) = [e for e in acd.join(c, "q", 201.0 + i) if isinstance(e, Joined)]
        assert j.expected_wait == (i + 1) * 90.0 / 2  # AHT (60+120)/2 = 90, n = 2
    assert [acd.expected_wait(c, 210.0) for c in ("w1", "w2", "w3")] == [45.0, 90.0, 135.0]
    # history 3: after handle times 60, 120, 30, 90 the average is (120+30+90)/3 = 80
    acd.call_ended("b1", 220.0, by="caller")  # talk 20 -> 30
    acd.call_ended("b2", 280.0, by="caller")  # talk 80 -> 90
    assert acd.snapshot()["queues"]["q"]["aht"] == 80.0
    assert [acd.expected_wait(c, 280.0) for c in ("w1", "w2", "w3")] == [40.0, 80.0, 120.0]
    # one agent paused after wrap-up: n = 1
    acd.pause("a2", 281.0)
    assert acd.expected_wait("w3", 281.0) == 240.0
    assert acd.expected_wait("nobody", 281.0) is None
    acd.check_invariants()


def test_expected_wait_is_none_with_no_staffed_agent_and_default_before_any_call() -> None:
    acd = make(4, default_handle_s=120.0, login=False)
    assert acd.join("c1", "q", 0.0)[0] == Joined("c1", "q", 1, None)
    acd.login("a1", 1.0)  # rings c1
    acd.login("a2", 1.0)
    acd.pause("a2", 1.0)
    acd.join("c2", "q", 2.0)  # a1 ringing, a2 paused, nobody else logged in
    assert acd.expected_wait("c2", 2.0) == 120.0  # position 1, n = 1 (a1 ringing counts)


# --- callbacks --------------------------------------------------------------------------------------


def test_callback_keeps_the_place_in_line_and_rings_an_agent_first() -> None:
    acd = make(1, login=False, max_wait_s=60.0)
    for i, c in enumerate(("c1", "c2", "c3")):
        acd.join(c, "q", 100.0 + i, caller=f"55{i}")
    ev = acd.request_callback("c2", 130.0, number="13800000000")
    assert logs(ev) == [("CALLBACK", "NONE", ("13800000000", "2", "29"))]
    assert acd.leave("c2", 131.0) == []  # the caller hangs up: the entry stays
    assert acd.position("c2") == 2
    ev = acd.handle_timer(162.0)  # c1 and c3 time out, the callback entry does not
    assert [e.call_id for e in ev if isinstance(e, CallTimedOut)] == ["c1", "c3"]
    assert acd.position("c2") == 1 and acd.position("c3") is None  # c3 timed out too (max wait 60)
    ev = acd.login("a1", 200.0)
    (r,) = rings(ev)
    assert (r.call_id, r.agents, r.callback) == ("c2", ("a1",), True)
    ev = acd.ring_result("c2", "a1", 205.0, answered=True)
    assert logs(ev) == [("CALLBACKCONNECT", "a1", ("13800000000", "104"))]
    acd.check_invariants()
    ev = acd.callback_result("c2", 215.0, connected=True)
    assert logs(ev) == [("CONNECT", "a1", ("104", "c2", "5"))]
    ev = acd.call_ended("c2", 275.0, by="agent")
    assert logs(ev) == [("COMPLETEAGENT", "a1", ("104", "60", "2"))]
    q = acd.snapshot()["queues"]["q"]
    assert (q["entered"], q["connected"], q["timed_out"]) == (3, 1, 2)
    acd.check_invariants()


def test_failed_callback_is_logged_and_the_agent_is_free_again() -> None:
    acd = make(1, login=False)
    acd.join("c1", "q", 100.0)
    acd.request_callback("c1", 110.0, number="555")
    acd.login("a1", 120.0)
    acd.ring_result("c1", "a1", 121.0, answered=True)
    acd.join("c2", "q", 122.0)
    ev = acd.callback_result("c1", 150.0, connected=False)
    assert logs(ev)[0] == ("CALLBACKFAIL", "a1", ("555", "50"))
    assert [r.call_id for r in rings(ev)] == ["c2"]
    assert acd.callback_result("c1", 151.0, connected=True) == []
    acd.check_invariants()


def test_request_callback_while_ringing_withdraws_the_ring_and_cancel_removes_the_entry() -> None:
    acd = make(1)
    acd.join("c1", "q", 10.0)
    ev = acd.request_callback("c1", 12.0, number="555")
    assert [e.agent_id for e in ev if isinstance(e, CancelRing)] == ["a1"]
    assert [r.callback for r in rings(ev)] == [True]  # offered again as a callback
    ev = acd.leave("c1", 13.0, reason="cancel")
    assert logs(ev) == [("ABANDON", "NONE", ("1", "1", "3"))]
    assert acd.agent_state("a1") is AV
    acd.check_invariants()


def test_join_callback_places_a_stored_request_by_its_request_time() -> None:
    acd = make(1, login=False)
    acd.join("c1", "q", 100.0)
    acd.join("c2", "q", 200.0)
    ev = acd.join_callback("cb", "q", 250.0, number="555", since=150.0)
    assert ev[0] == Joined("cb", "q", 2, None) and logs(ev) == []
    assert acd.join_callback("cb", "q", 251.0, number="555", since=150.0) == []
    assert [acd.position(c) for c in ("c1", "cb", "c2")] == [1, 2, 3]
    acd.check_invariants()


# --- the queue log ----------------------------------------------------------------------------------


def test_queue_log_of_a_normal_call() -> None:
    acd = make(1, login=False, wrapup_s=10.0)
    ev = acd.join("c1", "q", 100.0, caller="13900000000")
    ev += acd.login("a1", 130.0)  # rings
    ev += acd.ring_result("c1", "a1", 135.2, answered=True)
    ev += acd.call_ended("c1", 195.6, by="caller")
    assert logs(ev) == [
        ("ENTERQUEUE", "NONE", ("", "13900000000")),
        ("CONNECT", "a1", ("35", "c1", "5")),
        ("COMPLETECALLER", "a1", ("35", "60", "1")),
    ]
    times = [e.time for e in ev if isinstance(e, QueueLogEntry) and e.call_id == "c1"]
    assert times == [100.0, 130.0, 135.2, 195.6]  # with the RINGAGENT at 130


def test_abandon_is_logged_with_position_and_wait() -> None:
    acd = make(1, login=False)
    for i, c in enumerate(("c1", "c2", "c3")):
        acd.join(c, "q", 100.0 + i)
    ev = acd.leave("c3", 130.0)
    assert logs(ev) == [("ABANDON", "NONE", ("3", "3", "28"))]
    ev = acd.leave("c1", 140.0)
    assert logs(ev) == [("ABANDON", "NONE", ("1", "1", "40"))]
    assert acd.position("c2") == 1
    assert acd.leave("c1", 141.0) == []  # gone already
    # hanging up while an agent rings: the ring is withdrawn
    ev = acd.login("a1", 150.0) + acd.leave("c2", 152.0)
    assert [e.agent_id for e in ev if isinstance(e, CancelRing)] == ["a1"]
    assert logs(ev) == [("ABANDON", "NONE", ("1", "2", "51"))]
    assert acd.agent_state("a1") is AV
    q = acd.snapshot()["queues"]["q"]
    assert (q["entered"], q["abandoned"], q["waiting"]) == (3, 3, 0)
    acd.check_invariants()


def test_exit_with_key_voicemail_and_transfer_entries() -> None:
    acd = make(1, login=False, wrapup_s=10.0)
    acd.join("c1", "q", 100.0)
    acd.join("c2", "q", 101.0)
    acd.join("c3", "q", 102.0)
    assert logs(acd.leave("c2", 110.0, reason="key", key="1")) == [
        ("EXITWITHKEY", "NONE", ("1", "2", "2", "9"))
    ]
    assert logs(acd.leave("c3", 111.0, reason="voicemail")) == [("VOICEMAIL", "NONE", ("2", "3", "9"))]
    acd.login("a1", 120.0)
    acd.ring_result("c1", "a1", 121.0, answered=True)
    ev = acd.transferred("c1", 181.0, target="3001")
    assert logs(ev) == [("TRANSFER", "a1", ("3001", "", "21", "60", "1"))]
    assert acd.agent_state("a1") is WRAP_UP
    assert acd.transferred("c1", 182.0, target="3001") == []
    acd.join("c9", "q", 190.0)
    with pytest.raises(ValueError):
        acd.leave("c9", 191.0, reason="nonsense")
    acd.check_invariants()


def test_call_ended_before_connect_is_an_abandon_and_unknown_calls_are_ignored() -> None:
    acd = make(1)
    acd.join("c1", "q", 10.0)
    ev = acd.call_ended("c1", 12.0, by="caller")
    assert logs(ev) == [("ABANDON", "NONE", ("1", "1", "2"))]
    assert acd.call_ended("c1", 13.0, by="caller") == []
    assert acd.ring_result("zz", "a1", 13.0, answered=True) == []
    acd.join("c2", "q", 14.0)
    with pytest.raises(ValueError):
        acd.join("c2", "q", 14.0)
    acd.check_invariants()


def test_snapshot_is_json() -> None:
    acd = make(2)
    acd.join("c1", "q", 10.0, vip=True)
    acd.join("c2", "q", 11.0)
    acd.join("c3", "q", 12.0)
    snap = json.loads(json.dumps(acd.snapshot()))
    assert snap["queues"]["q"] == snap["queues"]["q"] | {
        "waiting": 1,
        "ringing": 2,
        "staffed": 2,
        "entered": 3,
    }
    assert snap["agents"]["a1"]["state"] == "ringing" and snap["agents"]["a1"]["call"] == "c1"
    assert snap["calls"]["c3"]["position"] == 1


def test_random_strategy_heap_stays_bounded() -> None:
    acd = make(5, Strategy.RANDOM, rng=random.Random(1), wrapup_s=0.0)
    for i in range(2000):
        (agent,) = rung(acd.join(f"c{i}", "q", float(i)))
        acd.ring_result(f"c{i}", agent, i + 0.1, answered=True)
        acd.call_ended(f"c{i}", i + 0.2, by="caller")
    acd.check_invariants()
    assert len(acd._queues["q"].heap) <= 2 * 5 + 64


def test_every_ring_is_logged_with_the_agent_extension_and_timeout() -> None:
    acd = make(2, ring_timeout_s=15.0)
    ev = acd.join("c1", "q", 10.0)
    assert logs(ev, rings=True)[-1] == ("RINGAGENT", "a1", ("2001", "15"))
    ev = acd.ring_result("c1", "a1", 25.0, answered=False)
    assert [e[:2] for e in logs(ev, rings=True)] == [("RINGNOANSWER", "a1"), ("RINGAGENT", "a2")]
