"""The ACD service on a B2BUA driven with SIP bytes (fake SIP clock) and a real media engine.

Agents' phones and callers are the byte-level phones of test_calls; prompts are a short stand-in
library so waits do not take real seconds. The queue log is the real SQLite + text writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from softswitch.acd.callbacks import CallbackStore, list_callbacks
from softswitch.acd.core import AgentState
from softswitch.acd.queue_log import QueueLog
from softswitch.acd.service import AcdService
from softswitch.cdr import CdrStore
from softswitch.codecs.g711 import alaw_encode, ulaw_encode
from softswitch.config import load_config
from softswitch.location import LocationStore
from softswitch.media.engine import MediaEngine
from softswitch.sip.ids import counter_ids
from softswitch.sip.message import Request, Response
from softswitch.sip.peer import Peer
from softswitch.switch import SwitchCore

from .test_calls import Caller, Net, answer_to, finals, offer, register, switch_net

AGENT1 = Peer("udp", "127.0.0.1", 6011)
AGENT2 = Peer("udp", "127.0.0.1", 6012)
CUSTOMER = Peer("udp", "127.0.0.1", 6005)

CONFIG = """
[switch]
domain = "hotline.example"
listen = ["udp://127.0.0.1:5060"]
rtp_ports = [44000, 44999]
data_dir = "var"
[accounts.1001]
password = "pw1001"
[accounts.1005]
password = "pw1005"
[accounts.2001]
password = "pw2001"
[accounts.2002]
password = "pw2002"
[[routes]]
match = "800"
to = "queue:sales"
[[routes]]
match = "^[0-9]{4}$"
to = "extension"
[queues.sales]
skill = "sales"
strategy = "longest_idle"
ring_timeout_s = 10
wrapup_s = 5
max_wait_s = 120
max_misses = 2
announce_position_every_s = 0
[agents.2001]
extension = "2001"
skills = { sales = 5 }
[agents.2002]
extension = "2002"
skills = { sales = 3 }
"""


class ShortPrompts:
    """Every prompt is 40 ms of silence and the music 200 ms: waits take no real time."""

    def frames(self, language: str, name: str, codec: str) -> np.ndarray:
        n = 10 if name == "moh" else 2
        pcm = np.zeros((n, 160), dtype=np.int16)
        return ulaw_encode(pcm) if codec == "pcmu" else alaw_encode(pcm)


class Acd:
    def __init__(self, net: Net, svc: AcdService, log: QueueLog) -> None:
        self.net, self.svc, self.log = net, svc, log

    def tick(self, seconds: float) -> None:
        self.net.tick(seconds)
        self.svc._on_timer()  # the ACD's timers run on the fake wall clock here

    def events(self) -> list[tuple[str, str, str]]:
        self.log.flush()
        return [(e.event, e.agent, e.call_id) for e in self.log.entries(0, 2e9)]


@pytest.fixture
async def acd(tmp_path: Path) -> AsyncIterator[Acd]:
    (tmp_path / "switch.toml").write_text(CONFIG)
    config = load_config(tmp_path / "switch.toml")
    store = LocationStore(None)
    core = SwitchCore(config, store, ids=counter_ids("t"), secret=b"k" * 32, local_hosts=["127.0.0.1"])
    media = MediaEngine(host="127.0.0.1", ports=config.rtp_ports, capacity=32, prompts=ShortPrompts())  # type: ignore[arg-type]
    media.start()
    cdr = CdrStore(config.data_dir / "cdr.sqlite")
    n = switch_net(core, media, cdr)
    calls = n.calls
    qlog = QueueLog(config.data_dir)
    svc = AcdService(
        config, queue_log=qlog, store=store, callbacks=CallbackStore(config.data_dir), clock=lambda: n.wall
    )
    svc.attach(calls)
    calls.apps["queue"] = svc.queue_app
    calls.apps["feature"] = svc.feature_app
    svc.start()
    register(n, "2001", 6011)
    register(n, "2002", 6012)
    register(n, "1005", 6005)
    yield Acd(n, svc, qlog)
    await svc.stop()
    media.stop()
    cdr.close()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.01)


async def until(acd: Acd, peer: Peer, method: str, timeout: float = 3.0) -> list[Request]:
    """Wait (bounded) until the switch sends ``method`` requests to ``peer``; returns them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        acd.net.tick(0.0)
        got = acd.net.requests(peer, method)
        if got or loop.time() > deadline:
            return got
        await asyncio.sleep(0.02)


async def dial(acd: Acd, caller: Caller) -> list[Request | Response]:
    """INVITE with digest; ACKs the switch's 200 once the application answered; returns what came."""
    caller.invite()
    await settle()
    got = acd.net.take(caller.peer)
    (ok,) = [m for m in finals(got) if m.status == 200]
    caller.to_tag = ok.to.tag
    acd.net.deliver(caller.request("ACK", cseq=caller.cseq), caller.peer)
    return got


async def feature(acd: Acd, agent: str, port: int, code: str) -> None:
    phone = Caller(acd.net, number=code, call_id=f"fc-{agent}-{code}", user=agent, port=port)
    got = await dial(acd, phone)
    byes = [m for m in got if isinstance(m, Request) and m.method == "BYE"] or await until(
        acd, phone.peer, "BYE"
    )
    assert byes, "the feature-code call is hung up after its prompt"
    acd.net.deliver(answer_to(byes[0], 200), phone.peer)


def invites(acd: Acd, peer: Peer) -> list[Request]:
    return acd.net.requests(peer, "INVITE")


async def test_feature_code_login_then_queue_call_answered_completed_and_wrapped_up(acd: Acd) -> None:
    await feature(acd, "2001", 6011, "*70")
    assert acd.svc.core.agent_state("2001") is AgentState.AVAILABLE
    caller = Caller(acd.net, number="800", call_id="q-1")
    await dial(acd, caller)
    await settle()
    (inv,) = invites(acd, AGENT1)
    assert inv.request_uri.user == "2001"  # type: ignore[union-attr]
    acd.net.deliver(answer_to(inv, 180), AGENT1)
    assert acd.net.requests(AGENT1, "CANCEL") == []  # ringing is not mistaken for a reason to cancel
    acd.net.tick(3.0)
    acd.net.deliver(answer_to(inv, 200, body=offer(7100)), AGENT1)
    await settle()
    assert len(acd.net.requests(AGENT1, "ACK")) == 1
    call = acd.net.calls.calls["q-1"]
    assert call.a_media.peer is call.b_media
    assert acd.svc.core.agent_state("2001") is AgentState.ON_CALL
    acd.net.tick(10.0)
    acd.net.deliver(caller.request("BYE"), caller.peer)
    assert [r.call_id for r in acd.net.requests(AGENT1, "BYE")] == [call.b_call_id]
    assert acd.svc.core.agent_state("2001") is AgentState.WRAP_UP
    acd.tick(5.0)
    assert acd.svc.core.agent_state("2001") is AgentState.AVAILABLE
    ev = acd.events()
    assert [e for e, _, _ in ev] == ["AGENTLOGIN", "ENTERQUEUE", "RINGAGENT", "CONNECT", "COMPLETECALLER"]
    acd.log.flush()
    connect = next(e for e in acd.log.entries(0, 2e9) if e.event == "CONNECT")
    complete = next(e for e in acd.log.entries(0, 2e9) if e.event == "COMPLETECALLER")
    assert connect.agent == "2001" and connect.data[0] == "3"  # held 3 s
    assert complete.data[:2] == ("3", "10")  # hold 3 s, talk 10 s


async def test_no_answer_goes_to_next_agent_and_unregistered_agents_are_never_rung(acd: Acd) -> None:
    acd.svc.agent_command("2001", "login")
    acd.net.tick(1.0)
    acd.svc.agent_command("2002", "login")  # 2001 has been idle longer: rung first
    caller = Caller(acd.net, number="800", call_id="q-2")
    await dial(acd, caller)
    await settle()
    (inv1,) = invites(acd, AGENT1)
    acd.net.deliver(answer_to(inv1, 180), AGENT1)
    acd.net.tick(10.5)  # the queue's ring timeout
    await settle()
    assert len(acd.net.requests(AGENT1, "CANCEL")) == 1
    (inv2,) = invites(acd, AGENT2)
    acd.net.deliver(answer_to(inv2, 200, body=offer(7200)), AGENT2)
    await settle()
    assert acd.svc.core.agent_state("2002") is AgentState.ON_CALL
    assert acd.svc.core.agent_state("2001") is AgentState.AVAILABLE  # one miss; pause after two
    assert [(e, a) for e, a, _ in acd.events()][-5:] == [
        ("ENTERQUEUE", "NONE"), ("RINGAGENT", "2001"), ("RINGNOANSWER", "2001"), ("RINGAGENT", "2002"),
        ("CONNECT", "2002"),
    ]  # fmt: skip
    acd.net.deliver(caller.request("BYE"), caller.peer)
    acd.net.take(caller.peer)
    # 2001's phone drops its registration: a new caller is not offered to it
    acd.net.calls.store.delete("2001", "<sip:2001@127.0.0.1:6011>")
    for b in list(acd.net.calls.store.raw("2001")):
        acd.net.calls.store.delete("2001", b.contact)
    assert acd.svc.snapshot()["agents"]["2001"]["registered"] is False
    caller2 = Caller(acd.net, number="800", call_id="q-3")
    await dial(acd, caller2)
    await settle()
    assert invites(acd, AGENT1) == []
    assert acd.svc.core.position("q-3") == 1  # waits for 2002's wrap-up
    acd.tick(5.0)
    await settle()
    assert len(invites(acd, AGENT2)) == 1


async def test_caller_hangs_up_while_agent_rings_is_an_abandon_and_the_ring_is_withdrawn(acd: Acd) -> None:
    acd.svc.agent_command("2001", "login")
    caller = Caller(acd.net, number="800", call_id="q-4")
    await dial(acd, caller)
    await settle()
    (inv,) = invites(acd, AGENT1)
    acd.net.deliver(answer_to(inv, 180), AGENT1)
    acd.net.tick(4.0)
    acd.net.deliver(caller.request("BYE"), caller.peer)
    await settle()
    assert len(acd.net.requests(AGENT1, "CANCEL")) == 1
    assert acd.svc.core.agent_state("2001") is AgentState.AVAILABLE
    acd.log.flush()
    abandon = next(e for e in acd.log.entries(0, 2e9) if e.event == "ABANDON")
    assert abandon.data == ("1", "1", "4")  # position, original position, waited 4 s
    assert acd.svc.waiting == {}


async def test_callback_keeps_the_place_rings_the_agent_first_then_the_customer(acd: Acd) -> None:
    caller = Caller(acd.net, number="800", call_id="q-5", user="1005", port=6005)
    await dial(acd, caller)
    await settle()
    call = acd.net.calls.calls["q-5"]
    call.a_media.feed_digit("1")  # the callback key
    await settle()
    call.a_media.feed_digit("1")  # confirm the number read out (the caller's own, 1005)
    await settle()
    assert await until(acd, caller.peer, "BYE"), "the switch hangs up after taking the request"
    (req,) = list_callbacks(acd.net.calls.config.data_dir)
    assert (req.queue, req.number, req.state) == ("sales", "1005", "waiting")
    acd.svc.agent_command("2001", "login")  # an agent frees up: the agent is called first
    await settle()
    (inv,) = invites(acd, AGENT1)
    assert invites(acd, CUSTOMER) == []
    acd.net.deliver(answer_to(inv, 200, body=offer(7300)), AGENT1)
    await settle()
    assert len(acd.net.requests(AGENT1, "ACK")) == 1
    (cinv,) = await until(acd, CUSTOMER, "INVITE")  # after a short intro to the agent
    assert cinv.request_uri.user == "1005"  # type: ignore[union-attr]
    assert list_callbacks(acd.net.calls.config.data_dir)[0].state == "calling"
    acd.net.deliver(answer_to(cinv, 200, body=offer(7400)), CUSTOMER)
    await settle()
    assert list_callbacks(acd.net.calls.config.data_dir)[0].state == "done"
    assert acd.svc.core.agent_state("2001") is AgentState.ON_CALL
    events = [e for e, _, _ in acd.events()]
    assert events[:2] == ["ENTERQUEUE", "CALLBACK"]
    assert events[-2:] == ["CALLBACKCONNECT", "CONNECT"]


async def test_agent_blind_transfer_is_logged_and_frees_the_agent(acd: Acd) -> None:
    acd.svc.agent_command("2001", "login")
    caller = Caller(acd.net, number="800", call_id="q-6")
    await dial(acd, caller)
    await settle()
    (inv,) = invites(acd, AGENT1)
    acd.net.deliver(answer_to(inv, 200, body=offer(7100)), AGENT1)
    await settle()
    acd.net.tick(20.0)
    refer = (
        f"REFER sip:switch@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6011;branch=z9hG4bKref1\r\n"
        f"Max-Forwards: 70\r\nFrom: {inv.headers.get('To')};tag=calleetag\r\nTo: {inv.headers.get('From')}\r\n"
        f"Call-ID: {inv.call_id}\r\nCSeq: 2 REFER\r\nContact: <sip:2001@127.0.0.1:6011>\r\n"
        f"Refer-To: <sip:1005@hotline.example>\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    acd.net.deliver(refer, AGENT1)
    assert [m.status for m in acd.net.take(AGENT1) if isinstance(m, Response)] == [202]
    assert acd.svc.core.agent_state("2001") is AgentState.WRAP_UP
    (target,) = invites(acd, CUSTOMER)
    acd.net.deliver(answer_to(target, 200, tag="ctag", body=offer(7500)), CUSTOMER)
    call = acd.net.calls.calls["q-6"]
    assert call.b_dialog is not None and call.b_dialog.call_id == target.call_id
    acd.net.deliver(caller.request("BYE"), caller.peer)
    acd.log.flush()
    transfer = [e for e in acd.log.entries(0, 2e9) if e.event == "TRANSFER"]
    assert [(e.agent, e.data[0], e.data[3]) for e in transfer] == [("2001", "1005", "20")]  # talked 20 s
    assert [e for e, _, _ in acd.events()][-1] == "TRANSFER"  # the caller's later BYE logs nothing more
    acd.tick(5.0)
    assert acd.svc.core.agent_state("2001") is AgentState.AVAILABLE
