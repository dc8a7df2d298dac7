"""The B2BUA driven with SIP bytes (fake SIP clock) and a real media engine on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from softswitch.calls import B2BUA
from softswitch.cdr import CdrStore
from softswitch.config import Config, load_config
from softswitch.location import LocationStore
from softswitch.media.engine import MediaEngine
from softswitch.media.workers import RemoteMediaEngine
from softswitch.sip import sdp
from softswitch.sip.ids import counter_ids
from softswitch.sip.message import Request, Response, parse_message
from softswitch.sip.peer import Peer
from softswitch.switch import SwitchCore

from .peers import digest_authorization
from .sipclient import Registration

WALL = 1_800_000_000.0
SWITCH = "127.0.0.1:5060"
A = Peer("udp", "127.0.0.1", 6001)  # caller 1001
B = Peer("udp", "127.0.0.1", 6002)  # callee 1002
C = Peer("udp", "127.0.0.1", 6003)  # transfer target 1003


def offer(port: int, direction: str = "sendrecv") -> bytes:
    return (
        "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na={direction}\r\n"
    ).encode()


class Net:
    """The switch core plus what it sent, sorted by destination."""

    def __init__(self, core: SwitchCore, calls: B2BUA) -> None:
        self.core = core
        self.calls = calls
        self.now = 100.0
        self.wall = WALL
        self.sent: dict[Peer, list[bytes]] = {}

    def deliver(self, data: bytes, src: Peer) -> None:
        for t in self.core.receive(data, src, self.now, self.wall):
            self.sent.setdefault(t.peer, []).append(t.data)

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.wall += seconds
        for t in self.core.handle_timer(self.now, self.wall):
            self.sent.setdefault(t.peer, []).append(t.data)

    def flush(self) -> None:
        """What the B2BUA sends outside a packet or timer (applications, media events)."""
        for t in self.calls.pending:
            self.sent.setdefault(t.peer, []).append(t.data)
        self.calls.pending.clear()

    def take(self, peer: Peer) -> list[Request | Response]:
        msgs = [parse_message(d) for d in self.sent.pop(peer, [])]
        return msgs

    def requests(self, peer: Peer, method: str) -> list[Request]:
        return [m for m in self.take(peer) if isinstance(m, Request) and m.method == method]


def answer_to(req: Request, status: int, tag: str = "calleetag", body: bytes = b"") -> bytes:
    lines = [f"SIP/2.0 {status} X"]
    for name, value in req.headers:
        if name in ("Via", "From", "Call-ID", "CSeq"):
            lines.append(f"{name}: {value}")
        elif name == "To":
            lines.append(f"To: {value}" + ("" if status == 100 or ";tag=" in value else f";tag={tag}"))
    lines.append("Contact: <sip:1002@127.0.0.1:6002>")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Caller:
    """1001's phone: INVITE with digest, ACK, BYE, CANCEL, re-INVITE."""

    def __init__(
        self, net: Net, number: str = "1002", call_id: str = "call-1@a", user: str = "1001", port: int = 6001
    ) -> None:
        self.net = net
        self.user, self.port, self.peer = user, port, Peer("udp", "127.0.0.1", port)
        self.number = number
        self.call_id = call_id
        self.cseq = 0
        self.to_tag: str | None = None
        self.branch = 0
        self.invite_branch = ""
        self.invite_extra: list[str] = []

    def request(
        self, method: str, body: bytes = b"", auth: str | None = None, cseq: int | None = None
    ) -> bytes:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        self.branch += 1
        reuse = method == "CANCEL" or (
            method == "ACK" and self.to_tag is None
        )  # same transaction as the INVITE
        branch = self.invite_branch if reuse else f"z9hG4bK{self.call_id}.{self.branch}"
        if method == "INVITE" and self.to_tag is None:
            self.invite_branch = branch
        to = f"<sip:{self.number}@{SWITCH}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        lines = [
            f"{method} sip:{self.number}@{SWITCH} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@hotline.example>;tag=callertag",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>",
        ]
        if auth:
            lines.append(f"Proxy-Authorization: {auth}")
        if method == "INVITE":
            lines += self.invite_extra
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def invite(self) -> list[Request | Response]:
        """INVITE, 407, ACK, INVITE with credentials; returns what the caller got (100 Trying, ...)."""
        a = self.peer
        self.net.deliver(self.request("INVITE", offer(7000)), a)
        (challenge,) = finals(self.net.take(a))
        assert isinstance(challenge, Response) and challenge.status == 407
        self.net.deliver(
            self.request("ACK", cseq=self.cseq), a
        )  # the ACK for the 407 (same branch in real life)
        self.net.sent.pop(a, None)
        value = challenge.headers.get("Proxy-Authenticate") or ""
        auth = digest_authorization(
            value, self.user, f"pw{self.user}", "INVITE", f"sip:{self.number}@{SWITCH}"
        )
        self.net.deliver(self.request("INVITE", offer(7000), auth=auth), a)
        got = self.net.take(a)
        assert isinstance(got[0], Response) and got[0].status == 100
        return got


def finals(msgs: list[Request | Response]) -> list[Response]:
    return [m for m in msgs if isinstance(m, Response) and m.status >= 200]


def make_config(tmp_path: Path, extra: str = "") -> Config:
    (tmp_path / "switch.toml").write_text(
        f"""
[switch]
domain = "hotline.example"
listen = ["udp://127.0.0.1:5060"]
rtp_ports = [43000, 43999]
data_dir = "var"
max_calls = 3
[accounts.1001]
password = "pw1001"
[accounts.1002]
password = "pw1002"
[accounts.1003]
password = "pw1003"
[[routes]]
match = "^[0-9]{{4}}$"
to = "extension"
[[routes]]
match = "95565"
to = "ivr:hotline"
[ivr.hotline]
prompt = "welcome_main"
[ivr.hotline.keys]
"9" = "menu:hotline"
[recording]
enabled = false
[calls]
ring_timeout_s = 30
{extra}
"""
    )
    return load_config(tmp_path / "switch.toml")


@pytest.fixture(params=[0, 2], ids=["in-process", "media-workers"])
async def net(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Net]:
    """The switch with its media engine in-process, or in two worker processes (RemoteMediaEngine)."""
    config = make_config(tmp_path)
    store = LocationStore(None)
    core = SwitchCore(config, store, ids=counter_ids("t"), secret=b"k" * 32, local_hosts=["127.0.0.1"])
    if request.param:
        pool = RemoteMediaEngine(workers=request.param, host="127.0.0.1", ports=config.rtp_ports, capacity=32,
                                 recording=False, pool=4)  # fmt: skip
        pool.start()
        await pool.wait_ready()
        media = cast(MediaEngine, pool)
    else:
        media = MediaEngine(host="127.0.0.1", ports=config.rtp_ports, capacity=32)
        media.start()
    cdr = CdrStore(config.data_dir / "cdr.sqlite")
    n = switch_net(core, media, cdr)
    register(n, "1002", 6002)
    register(n, "1003", 6003)
    yield n
    media.stop()
    cdr.close()


def switch_net(core: SwitchCore, media: MediaEngine, cdr: CdrStore | None) -> Net:
    """A B2BUA on ``core`` with ``media``, on the Net's fake clock; what it sends lands in the Net."""
    holder: list[Net] = []
    calls = B2BUA(
        core.config, core.stack, core.ids, core.store, core.auth, media, cdr,
        local={"udp": ("127.0.0.1", 5060)}, clock=lambda: (holder[0].now, holder[0].wall),
    )  # fmt: skip
    core.enable_calls(calls)
    n = Net(core, calls)
    calls.flush = n.flush
    holder.append(n)
    return n


def register(n: Net, user: str, port: int) -> None:
    phone = Registration(user, f"pw{user}", port=port, server=SWITCH, call_id=f"reg-{user}")
    n.deliver(phone.request(), Peer("udp", "127.0.0.1", port))
    (challenge,) = n.take(Peer("udp", "127.0.0.1", port))
    assert isinstance(challenge, Response)
    n.deliver(phone.request(authorization=phone.answer(challenge)), Peer("udp", "127.0.0.1", port))
    (ok,) = n.take(Peer("udp", "127.0.0.1", port))
    assert isinstance(ok, Response) and ok.status == 200


def cdrs(n: Net) -> list[tuple[str, int | None, str | None]]:
    assert n.calls.cdr is not None
    return [
        (str(r.disposition), r.sip_code, str(r.hangup_side) if r.hangup_side else None)
        for r in n.calls.cdr.query()
    ]


def ring_and_answer(n: Net, caller: Caller) -> Request:
    caller.invite()
    (inv,) = n.requests(B, "INVITE")
    assert inv.request_uri.user == "1002"  # type: ignore[union-attr]
    n.deliver(answer_to(inv, 100), B)
    n.deliver(answer_to(inv, 180), B)
    (ringing,) = n.take(A)
    assert isinstance(ringing, Response) and ringing.status == 180
    n.tick(2.0)
    n.deliver(answer_to(inv, 200, body=offer(7100)), B)
    (ack,) = n.requests(B, "ACK")
    assert ack.cseq.seq == 1
    (ok,) = [m for m in n.take(A) if isinstance(m, Response)]
    assert ok.status == 200
    answer = sdp.parse(ok.body)
    assert answer.media[0].port == n.calls.calls[caller.call_id].a_media.port
    caller.to_tag = ok.to.tag
    n.deliver(caller.request("ACK", cseq=caller.cseq), A)
    return inv


async def test_unauthenticated_invite_is_challenged_and_makes_no_call(net: Net) -> None:
    caller = Caller(net)
    net.deliver(caller.request("INVITE", offer(7000)), A)
    (resp,) = finals(net.take(A))
    assert resp.status == 407
    assert resp.headers.get("Proxy-Authenticate")
    assert net.calls.calls == {} and cdrs(net) == []


async def test_call_answered_relayed_and_hung_up_by_caller(net: Net) -> None:
    caller = Caller(net)
    ring_and_answer(net, caller)
    call = net.calls.calls[caller.call_id]
    assert call.a_media.peer is call.b_media  # media bridged through the engine
    net.tick(5.0)
    net.deliver(caller.request("BYE"), A)
    (ok,) = net.take(A)
    assert isinstance(ok, Response) and ok.status == 200
    (bye,) = net.requests(B, "BYE")
    assert bye.call_id == call.b_call_id
    assert cdrs(net) == [("answered", None, "caller")]
    (record,) = net.calls.cdr.query()  # type: ignore[union-attr]
    assert record.duration == pytest.approx(7.0) and record.billable == pytest.approx(5.0)
    assert net.calls.media.legs == {}  # ports released


async def test_callee_hangs_up(net: Net) -> None:
    caller = Caller(net)
    inv = ring_and_answer(net, caller)
    bye = (
        f"BYE sip:switch@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6002;branch=z9hG4bKbye1\r\n"
        f"Max-Forwards: 70\r\nFrom: {inv.headers.get('To')};tag=calleetag\r\nTo: {inv.headers.get('From')}\r\n"
        f"Call-ID: {inv.call_id}\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    net.deliver(bye, B)
    assert [m.status for m in net.take(B) if isinstance(m, Response)] == [200]
    assert len(net.requests(A, "BYE")) == 1
    assert cdrs(net) == [("answered", None, "callee")]


async def test_busy_is_propagated(net: Net) -> None:
    caller = Caller(net)
    caller.invite()
    (inv,) = net.requests(B, "INVITE")
    net.deliver(answer_to(inv, 486), B)
    assert [m.status for m in net.take(A) if isinstance(m, Response)] == [486]
    assert cdrs(net) == [("busy", 486, None)]


async def test_cancel_before_answer(net: Net) -> None:
    caller = Caller(net)
    caller.invite()
    (inv,) = net.requests(B, "INVITE")
    net.deliver(answer_to(inv, 180), B)
    net.take(A)
    net.deliver(caller.request("CANCEL", cseq=caller.cseq), A)
    statuses = sorted(m.status for m in net.take(A) if isinstance(m, Response))
    assert statuses == [200, 487]
    (cancel,) = net.requests(B, "CANCEL")
    assert cancel.cseq.seq == inv.cseq.seq
    assert cdrs(net) == [("cancelled", 487, "caller")]


async def test_no_answer_times_out(net: Net) -> None:
    caller = Caller(net)
    caller.invite()
    (inv,) = net.requests(B, "INVITE")
    net.deliver(answer_to(inv, 180), B)
    net.take(A)
    net.tick(31.0)
    assert [m.status for m in net.take(A) if isinstance(m, Response)] == [480]
    assert len(net.requests(B, "CANCEL")) == 1
    assert cdrs(net) == [("no-answer", 480, None)]


async def test_unregistered_unknown_and_not_yet_routable_targets(net: Net) -> None:
    for number, status in (("1001", 480), ("4444", 404), ("95565", 501)):
        caller = Caller(net, number=number, call_id=f"c-{number}")
        assert [m.status for m in finals(caller.invite())] == [status], number
    assert net.calls.calls == {}


async def test_admission_limit_gives_503(net: Net) -> None:
    for i in range(3):
        Caller(net, call_id=f"busy-{i}").invite()
    net.sent.clear()
    (resp,) = finals(Caller(net, call_id="one-too-many").invite())
    assert resp.status == 503 and resp.headers.get("Retry-After")


async def test_hold_and_resume_by_reinvite(net: Net) -> None:
    caller = Caller(net)
    ring_and_answer(net, caller)
    net.deliver(caller.request("INVITE", offer(7000, "sendonly")), A)
    (ok,) = [m for m in net.take(A) if isinstance(m, Response) and m.status == 200]
    assert sdp.parse(ok.body).media[0].direction == sdp.Direction.RECVONLY
    net.deliver(caller.request("ACK", cseq=caller.cseq), A)
    net.deliver(caller.request("INVITE", offer(7000, "sendrecv")), A)
    (ok,) = [m for m in net.take(A) if isinstance(m, Response) and m.status == 200]
    assert sdp.parse(ok.body).media[0].direction == sdp.Direction.SENDRECV


async def test_blind_transfer_by_refer(net: Net) -> None:
    caller = Caller(net)
    inv = ring_and_answer(net, caller)
    refer = (
        f"REFER sip:switch@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6002;branch=z9hG4bKref1\r\n"
        f"Max-Forwards: 70\r\nFrom: {inv.headers.get('To')};tag=calleetag\r\nTo: {inv.headers.get('From')}\r\n"
        f"Call-ID: {inv.call_id}\r\nCSeq: 2 REFER\r\nContact: <sip:1002@127.0.0.1:6002>\r\n"
        f"Refer-To: <sip:1003@hotline.example>\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    net.deliver(refer, B)
    msgs = net.take(B)
    assert [m.status for m in msgs if isinstance(m, Response)] == [202]
    notify = [m for m in msgs if isinstance(m, Request) and m.method == "NOTIFY"]
    assert notify and notify[0].body.startswith(b"SIP/2.0 100")
    (inv_c,) = net.requests(C, "INVITE")
    net.deliver(answer_to(inv_c, 100, tag="ctag"), C)
    net.deliver(answer_to(inv_c, 200, tag="ctag", body=offer(7200)), C)
    assert len(net.requests(C, "ACK")) == 1
    to_b = net.take(B)
    finals = [m for m in to_b if isinstance(m, Request) and m.method == "NOTIFY"]
    assert finals[-1].body.startswith(b"SIP/2.0 200")
    assert "terminated" in (finals[-1].headers.get("Subscription-State") or "")
    assert any(isinstance(m, Request) and m.method == "BYE" for m in to_b)
    call = net.calls.calls[caller.call_id]
    assert call.a_media.peer is call.b_media and call.b_dialog is not None
    assert call.b_dialog.call_id == inv_c.call_id
    net.deliver(caller.request("BYE"), A)
    assert len(net.requests(C, "BYE")) == 1
    assert cdrs(net) == [("answered", None, "caller")]


async def test_early_media_183_is_bridged_before_answer(net: Net) -> None:
    caller = Caller(net)
    caller.invite()
    (inv,) = net.requests(B, "INVITE")
    net.deliver(answer_to(inv, 183, body=offer(7100)), B)
    (progress,) = net.take(A)
    assert isinstance(progress, Response) and progress.status == 183
    assert sdp.parse(progress.body).media[0].port == net.calls.calls[caller.call_id].a_media.port
    call = net.calls.calls[caller.call_id]
    assert call.a_media.peer is call.b_media


async def test_session_timer_honoured_and_expiry_hangs_up(net: Net) -> None:
    caller = Caller(net)
    caller.invite_extra = ["Supported: timer", "Session-Expires: 120;refresher=uac"]
    ring_and_answer(net, caller)
    call = net.calls.calls[caller.call_id]
    assert call.session_timer is not None and call.session_timer.interval == 120
    net.tick(60.0)  # a refresh re-INVITE from the caller resets the clock
    net.deliver(caller.request("INVITE", offer(7000)), A)
    ok = [m for m in net.take(A) if isinstance(m, Response) and m.status == 200]
    assert ok and (ok[0].headers.get("Session-Expires") or "").startswith("120")
    net.deliver(caller.request("ACK", cseq=caller.cseq), A)
    net.tick(60.0)
    assert call.call_id in net.calls.calls
    net.tick(40.0)  # no refresh within 120 - 32 s: BYE both ways
    assert len(net.requests(A, "BYE")) == 1 and len(net.requests(B, "BYE")) == 1
    assert cdrs(net) == [("answered", None, "system")]


async def test_rtp_timeout_hangs_up_both_sides(net: Net) -> None:
    import asyncio

    net.calls.media.rtp_timeout_s = 0.4
    caller = Caller(net)
    ring_and_answer(net, caller)
    await asyncio.sleep(1.5)  # the engine checks once a second; no RTP arrives at all
    net.tick(0.0)
    assert len(net.requests(A, "BYE")) == 1 and len(net.requests(B, "BYE")) == 1
    assert cdrs(net) == [("answered", None, "system")]


async def test_trunk_calls_in_by_address_and_out_by_route(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        '[trunks.pstn]\naddress = "127.0.0.1:6009"\n[[routes]]\nmatch = "^9[0-9]+$"\nto = "trunk:pstn"\n',
    )
    store = LocationStore(None)
    core = SwitchCore(config, store, ids=counter_ids("t"), secret=b"k" * 32, local_hosts=["127.0.0.1"])
    media = MediaEngine(host="127.0.0.1", ports=config.rtp_ports, capacity=8)
    media.start()
    clock = [100.0, WALL]
    calls = B2BUA(config, core.stack, core.ids, store, core.auth, media, None,
                  local={"udp": ("127.0.0.1", 5060)}, clock=lambda: (clock[0], clock[1]))  # fmt: skip
    core.enable_calls(calls)
    n = Net(core, calls)
    register(n, "1003", 6003)
    trunk = Peer("udp", "127.0.0.1", 6009)
    # a call from the trunk needs no credentials: it is admitted by its source address
    caller = Caller(n, number="1003", call_id="from-pstn")
    n.deliver(caller.request("INVITE", offer(7000)).replace(b"127.0.0.1:6001", b"127.0.0.1:6009"), trunk)
    got = n.take(trunk)
    assert [m.status for m in got if isinstance(m, Response)] == [100]
    assert n.calls.calls["from-pstn"].caller == "1001"
    assert n.calls.calls["from-pstn"].route_target == "extension"
    # a number routed to the trunk is sent there
    out = Caller(n, number="95551234", call_id="to-pstn")
    out.invite()
    (inv,) = n.requests(trunk, "INVITE")
    assert inv.uri == "sip:95551234@127.0.0.1:6009"
    media.stop()


class RtpPhone:
    """The caller's RTP side for application tests: sends RFC 4733 digits to the switch."""

    def __init__(self, port: int = 7000) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.seq = 0

    async def digit(self, leg_port: int, event: int, ts: int) -> None:
        import asyncio
        import struct

        from softswitch.codecs.telephone_event import TelephoneEvent, encode_event

        for i, end in ((1, False), (2, False), (3, True), (3, True), (3, True)):
            self.seq += 1
            head = struct.pack("!BBHII", 0x80, (0x80 if i == 1 and not end else 0) | 101, self.seq, ts, 42)
            self.sock.sendto(
                head + encode_event(TelephoneEvent(event, end, 10, 160 * i)), ("127.0.0.1", leg_port)
            )
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self.sock.close()


async def test_application_answers_collects_and_connects(net: Net) -> None:
    import asyncio

    from softswitch.calls import CallSession

    seen: dict[str, object] = {}

    async def menu(call: CallSession) -> None:
        call.answer()
        seen["digits"] = await call.collect(4, first_timeout=3)
        seen["connected"] = await call.connect("1002")

    net.calls.apps["ivr"] = menu
    phone = RtpPhone()
    caller = Caller(net, number="95565", call_id="ivr-1")
    caller.invite()
    await asyncio.sleep(0)
    (ok,) = finals(net.take(A))
    assert ok.status == 200 and sdp.parse(ok.body).media[0].port > 0
    caller.to_tag = ok.to.tag
    net.deliver(caller.request("ACK", cseq=caller.cseq), A)
    leg_port = net.calls.calls["ivr-1"].a_media.port
    for k, event in enumerate((4, 2, 11)):  # 4 2 #
        await phone.digit(leg_port, event, 1000 + 800 * k)
    await asyncio.sleep(0.1)
    assert seen["digits"] == "42"
    net.tick(0.0)
    (inv,) = net.requests(B, "INVITE")
    net.deliver(answer_to(inv, 200, body=offer(7100)), B)
    await asyncio.sleep(0.05)
    assert seen["connected"] is True
    call = net.calls.calls["ivr-1"]
    assert call.a_media.peer is call.b_media
    net.deliver(caller.request("BYE"), A)
    assert len(net.requests(B, "BYE")) == 1
    (record,) = net.calls.cdr.query()  # type: ignore[union-attr]
    assert (record.callee, record.route_target, str(record.disposition)) == ("1002", "extension", "answered")
    phone.close()


async def test_application_cancelled_cleanly_when_caller_hangs_up(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from softswitch.calls import CallSession

    state: dict[str, bool] = {}

    async def menu(call: CallSession) -> None:
        call.answer()
        try:
            await call.collect(6, first_timeout=30)
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise

    net.calls.apps["ivr"] = menu
    caller = Caller(net, number="95565", call_id="ivr-2")
    caller.invite()
    await asyncio.sleep(0)
    (ok,) = finals(net.take(A))
    caller.to_tag = ok.to.tag
    net.deliver(caller.request("ACK", cseq=caller.cseq), A)
    net.deliver(caller.request("BYE"), A)
    await asyncio.sleep(0.05)
    assert state == {"cancelled": True}
    assert net.calls.calls == {} and not [r for r in caplog.records if r.levelname == "ERROR"]
    assert cdrs(net) == [("answered", None, "caller")]


async def test_application_that_returns_hangs_up(net: Net) -> None:
    import asyncio

    from softswitch.calls import CallSession

    async def goodbye(call: CallSession) -> None:
        call.answer()

    net.calls.apps["ivr"] = goodbye
    caller = Caller(net, number="95565", call_id="ivr-3")
    caller.invite()
    await asyncio.sleep(0.01)
    net.tick(0.0)
    msgs = net.take(A)
    assert [m.status for m in msgs if isinstance(m, Response)][-1] == 200
    assert [m for m in msgs if isinstance(m, Request) and m.method == "BYE"]
    assert cdrs(net) == [("answered", None, "system")]
