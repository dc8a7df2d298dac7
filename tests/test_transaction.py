"""RFC 3261 §17 transaction layer, driven with a fake clock (no sockets)."""

from __future__ import annotations

import pytest

from softswitch.sip.message import Request, Response, make_response, parse_message
from softswitch.sip.peer import Peer
from softswitch.sip.transaction import (
    AckReceived,
    Event,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ProtocolError,
    RequestReceived,
    ResponseReceived,
    SendMessage,
    State,
    StrayResponse,
    Timer,
    TimerConfig,
    Transaction,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
)

UDP = Peer("udp", "192.0.2.1", 5060)
TCP = Peer("tcp", "192.0.2.1", 5060, connection=7)
PEERS = pytest.mark.parametrize("peer", [UDP, TCP], ids=["udp", "tcp"])


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKb1",
    cseq: int = 1,
    to_tag: str | None = None,
    from_tag: str = "ft1",
    uri: str = "sip:bob@example.com",
    call_id: str = "call-1@example.com",
    routes: tuple[str, ...] = (),
    via_extra: str = "",
) -> Request:
    via = "SIP/2.0/UDP 192.0.2.1:5060" + (f";branch={branch}" if branch else "") + via_extra
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        *(f"Route: {r}" for r in routes),
        f"From: Alice <sip:alice@example.com>;tag={from_tag}",
        "To: Bob <sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:alice@192.0.2.1>",
        "Content-Length: 0",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def wire_response(req: Request, status: int, to_tag: str | None = "tt1") -> Response:
    """A response as it arrives from the network (serialised and parsed again)."""
    msg = parse_message(make_response(req, status, to_tag=to_tag).to_bytes())
    assert isinstance(msg, Response)
    return msg


def sent(events: list[Event]) -> list[object]:
    return [e.message for e in events if isinstance(e, SendMessage)]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def state(txn: Transaction) -> State:
    return txn.state  # a call, so mypy does not narrow the attribute across transitions


def run(layer: TransactionLayer, until: float) -> list[tuple[float, list[Event]]]:
    """Advance the fake clock to ``until``, firing each timer at its exact deadline."""
    fired: list[tuple[float, list[Event]]] = []
    while (at := layer.next_timer()) is not None and at <= until:
        fired.append((at, layer.handle_timer(at)))
    return fired


def send_times(fired: list[tuple[float, list[Event]]]) -> list[float]:
    return [at for at, events in fired for e in events if isinstance(e, SendMessage)]


def intervals(times: list[float], start: float = 0.0) -> list[float]:
    out, prev = [], start
    for t in times:
        out.append(round(t - prev, 9))
        prev = t
    return out


# ------------------------------------------------------------------------------ INVITE client


def test_timer_a_doubles_until_timer_b() -> None:
    layer = TransactionLayer()
    invite = request()
    txn, events = layer.send_request(invite, UDP, 0.0)
    assert isinstance(txn, InviteClientTransaction) and state(txn) is State.CALLING
    assert sent(events) == [invite]
    fired = run(layer, 100.0)
    assert intervals(send_times(fired)) == [0.5, 1, 2, 4, 8, 16]
    at, last = fired[-1]
    assert at == 32.0
    assert last == [TransactionTimeout(txn, Timer.B), TransactionTerminated(txn)]
    assert state(txn) is State.TERMINATED and len(layer) == 0 and layer.next_timer() is None


def test_timer_b_reliable_no_retransmission() -> None:
    layer = TransactionLayer()
    txn, _ = layer.send_request(request(), TCP, 10.0)
    assert txn.timers == {Timer.B: 42.0}
    fired = run(layer, 100.0)
    assert [at for at, _ in fired] == [42.0]
    assert kinds(fired[0][1]) == ["TransactionTimeout", "TransactionTerminated"]


def test_invite_client_provisional_stops_a_and_b() -> None:
    layer = TransactionLayer()
    invite = request()
    txn, _ = layer.send_request(invite, UDP, 0.0)
    ringing = wire_response(invite, 180)
    assert layer.receive_response(ringing, UDP, 0.2) == [ResponseReceived(ringing, txn)]
    assert state(txn) is State.PROCEEDING and txn.timers == {}
    assert layer.next_timer() is None  # the stale heap entries are skipped
    assert run(layer, 1000.0) == []


@PEERS
def test_invite_client_non_2xx_final_acks_and_timer_d(peer: Peer) -> None:
    layer = TransactionLayer()
    invite = request(routes=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"))
    txn, _ = layer.send_request(invite, peer, 0.0)
    assert isinstance(txn, InviteClientTransaction)
    layer.receive_response(wire_response(invite, 100, to_tag=None), peer, 0.1)
    busy = wire_response(invite, 486, to_tag="callee")
    events = layer.receive_response(busy, peer, 2.0)
    ack = txn.ack
    assert ack is not None
    assert events[:2] == [ResponseReceived(busy, txn), SendMessage(ack, peer)]
    # §17.1.1.3: same Request-URI, top Via, From, Call-ID, Route; To from the response; CSeq ACK
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert ack.headers.get_all("Via") == ["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb1"]
    assert ack.headers.get_all("Route") == invite.headers.get_all("Route")
    assert ack.from_.tag == "ft1" and ack.to.tag == "callee"
    assert ack.call_id == invite.call_id and ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    assert parse_message(ack.to_bytes()).headers.get("Max-Forwards") == "70"
    if peer.reliable:  # Timer D is zero
        assert events[2:] == [TransactionTerminated(txn)] and len(layer) == 0
        assert layer.receive_response(busy, peer, 2.1) == [StrayResponse(busy)]
        return
    assert state(txn) is State.COMPLETED and txn.timers == {Timer.D: 34.0}
    # retransmitted final: ACK again, TU not told
    assert layer.receive_response(wire_response(invite, 486, to_tag="callee"), peer, 3.0) == [
        SendMessage(ack, peer)
    ]
    assert layer.receive_response(wire_response(invite, 180), peer, 3.5) == []  # late 1xx absorbed
    fired = run(layer, 100.0)
    assert fired == [(34.0, [TransactionTerminated(txn)])]


@PEERS
def test_invite_client_2xx_accepted_timer_m(peer: Peer) -> None:
    layer = TransactionLayer()
    invite = request()
    txn, _ = layer.send_request(invite, peer, 0.0)
    ok = wire_response(invite, 200)
    assert layer.receive_response(ok, peer, 1.0) == [ResponseReceived(ok, txn)]
    assert state(txn) is State.ACCEPTED and txn.timers == {Timer.M: 33.0}
    # RFC 6026: retransmitted (or forked) 2xx still reach the TU, which ACKs each; no ACK from the txn
    ok2 = wire_response(invite, 200, to_tag="fork2")
    assert layer.receive_response(ok2, peer, 2.0) == [ResponseReceived(ok2, txn)]
    assert layer.receive_response(wire_response(invite, 183), peer, 2.5) == []
    with pytest.raises(ProtocolError):
        layer.receive_response(wire_response(invite, 486), peer, 3.0)
    assert run(layer, 100.0) == [(33.0, [TransactionTerminated(txn)])]


def test_timer_c_optional_proxy_timer() -> None:
    layer = TransactionLayer()
    invite = request()
    txn, _ = layer.send_request(invite, TCP, 0.0)
    assert Timer.C not in txn.timers  # off by default
    layer2 = TransactionLayer()
    txn, _ = layer2.send_request(invite, TCP, 0.0, timer_c=180.0)
    assert txn.timers[Timer.C] == 180.0
    layer2.receive_response(wire_response(invite, 180), TCP, 10.0)
    assert txn.timers == {Timer.C: 190.0}  # reset by the 1xx; B stopped
    fired = run(layer2, 195.0)
    assert fired == [(190.0, [TransactionTimeout(txn, Timer.C)])]
    assert state(txn) is State.PROCEEDING  # the proxy TU now CANCELs; the txn waits for the final
    events = layer2.receive_response(wire_response(invite, 487), TCP, 191.0)
    assert kinds(events) == ["ResponseReceived", "SendMessage", "TransactionTerminated"]
    with pytest.raises(ValueError):
        layer2.send_request(request("OPTIONS", branch="z9hG4bKo"), TCP, 0.0, timer_c=180.0)


def test_invite_client_2xx_after_non_2xx_is_undefined() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.send_request(invite, UDP, 0.0)
    layer.receive_response(wire_response(invite, 404), UDP, 0.1)
    with pytest.raises(ProtocolError, match="Completed"):
        layer.receive_response(wire_response(invite, 200), UDP, 0.2)


# -------------------------------------------------------------------------- non-INVITE client


def test_timer_e_capped_at_t2_until_timer_f() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    txn, events = layer.send_request(options, UDP, 0.0)
    assert isinstance(txn, NonInviteClientTransaction) and state(txn) is State.TRYING
    assert sent(events) == [options]
    fired = run(layer, 100.0)
    assert all(m is options for _, evs in fired for m in sent(evs))
    assert intervals(send_times(fired)) == [0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4]
    assert fired[-1] == (32.0, [TransactionTimeout(txn, Timer.F), TransactionTerminated(txn)])


def test_timer_e_is_t2_in_proceeding() -> None:
    layer = TransactionLayer()
    options = request("OPTIONS")
    txn, _ = layer.send_request(options, UDP, 0.0)
    layer.receive_response(wire_response(options, 100, to_tag=None), UDP, 0.2)
    assert state(txn) is State.PROCEEDING
    fired = run(layer, 100.0)
    assert send_times(fired) == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert fired[-1] == (32.0, [TransactionTimeout(txn, Timer.F), TransactionTerminated(txn)])


def test_timer_f_reliable_no_retransmission() -> None:
    layer = TransactionLayer()
    txn, _ = layer.send_request(request("REGISTER"), TCP, 0.0)
    assert txn.timers == {Timer.F: 32.0}
    fired = run(layer, 100.0)
    assert fired == [(32.0, [TransactionTimeout(txn, Timer.F), TransactionTerminated(txn)])]


@PEERS
def test_non_invite_client_final_and_timer_k(peer: Peer) -> None:
    layer = TransactionLayer()
    register = request("REGISTER")
    txn, _ = layer.send_request(register, peer, 0.0)
    trying = wire_response(register, 100, to_tag=None)
    assert layer.receive_response(trying, peer, 0.1) == [ResponseReceived(trying, txn)]
    ok = wire_response(register, 200)
    events = layer.receive_response(ok, peer, 1.0)
    assert events[0] == ResponseReceived(ok, txn) and txn.last_response is ok
    if peer.reliable:
        assert events[1:] == [TransactionTerminated(txn)] and len(layer) == 0
        return
    assert state(txn) is State.COMPLETED and txn.timers == {Timer.K: 6.0}
    assert layer.receive_response(wire_response(register, 200), peer, 2.0) == []  # buffered
    assert run(layer, 100.0) == [(6.0, [TransactionTerminated(txn)])]


def test_stray_responses() -> None:
    layer = TransactionLayer()
    invite = request()
    layer.send_request(invite, UDP, 0.0)
    other = wire_response(request(branch="z9hG4bKother"), 200)
    assert layer.receive_response(other, UDP, 0.1) == [StrayResponse(other)]
    # same branch, other CSeq method: not this transaction (§17.1.3)
    cancel_resp = wire_response(request("CANCEL"), 200)
    assert layer.receive_response(cancel_resp, UDP, 0.1) == [StrayResponse(cancel_resp)]


def test_send_request_validation() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError, match="z9hG4bK"):
        layer.send_request(request(branch="1234"), UDP, 0.0)
    with pytest.raises(ValueError, match="ACK"):
        layer.send_request(request("ACK"), UDP, 0.0)
    layer.send_request(request(), UDP, 0.0)
    with pytest.raises(ValueError, match="already"):
        layer.send_request(request(), UDP, 0.0)
    # CANCEL shares the INVITE's branch but is its own transaction
    cancel_txn, _ = layer.send_request(request("CANCEL"), UDP, 0.0)
    assert isinstance(cancel_txn, NonInviteClientTransaction)
    assert len(layer) == 2


# ------------------------------------------------------------------------------ INVITE server


def new_invite_server(
    layer: TransactionLayer, peer: Peer, now: float = 0.0, **kw: object
) -> tuple[Request, InviteServerTransaction, list[Event]]:
    invite = request(**kw)  # type: ignore[arg-type]
    events = layer.receive_request(invite, peer, now)
    received = events[-1]
    assert isinstance(received, RequestReceived) and received.request is invite
    txn = received.transaction
    assert isinstance(txn, InviteServerTransaction)
    return invite, txn, events


def test_invite_server_sends_100_and_absorbs_retransmissions() -> None:
    layer = TransactionLayer()
    invite, txn, events = new_invite_server(layer, UDP)
    assert state(txn) is State.PROCEEDING and txn.peer == UDP
    trying = txn.last_response
    assert trying is not None and trying.status == 100 and trying.to.tag is None
    assert events == [SendMessage(trying, UDP), RequestReceived(invite, txn)]
    # retransmission: the last provisional again, nothing for the TU
    assert layer.receive_request(request(), UDP, 0.3) == [SendMessage(trying, UDP)]
    ringing = make_response(invite, 180, to_tag="uas")
    assert layer.send_response(txn, ringing, 1.0) == [SendMessage(ringing, UDP)]
    assert layer.receive_request(request(), UDP, 1.5) == [SendMessage(ringing, UDP)]
    assert layer.next_timer() is None  # no timers in Proceeding


def test_invite_server_without_100() -> None:
    layer = TransactionLayer(send_trying=False)
    invite, txn, events = new_invite_server(layer, UDP)
    assert events == [RequestReceived(invite, txn)]
    assert layer.receive_request(request(), UDP, 0.3) == []  # nothing to re-send yet


def test_timer_g_capped_at_t2_until_timer_h() -> None:
    layer = TransactionLayer()
    invite, txn, _ = new_invite_server(layer, UDP)
    busy = make_response(invite, 486, to_tag="uas")
    assert layer.send_response(txn, busy, 0.0) == [SendMessage(busy, UDP)]
    assert state(txn) is State.COMPLETED
    fired = run(layer, 100.0)
    assert all(m is busy for _, evs in fired for m in sent(evs))
    assert intervals(send_times(fired)) == [0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4]
    assert fired[-1] == (32.0, [TransactionTimeout(txn, Timer.H), TransactionTerminated(txn)])
    assert len(layer) == 0


def test_timer_h_reliable_no_retransmission() -> None:
    layer = TransactionLayer()
    invite, txn, _ = new_invite_server(layer, TCP)
    layer.send_response(txn, make_response(invite, 500, to_tag="uas"), 1.0)
    assert txn.timers == {Timer.H: 33.0}
    fired = run(layer, 100.0)
    assert fired == [(33.0, [TransactionTimeout(txn, Timer.H), TransactionTerminated(txn)])]


def test_invite_server_ack_for_non_2xx_absorbed_timer_i() -> None:
    layer = TransactionLayer()
    invite, txn, _ = new_invite_server(layer, UDP)
    busy = make_response(invite, 486, to_tag="uas")
    layer.send_response(txn, busy, 0.0)
    run(layer, 1.0)  # one G retransmission at 0.5
    assert layer.receive_request(request(), UDP, 1.2) == [SendMessage(busy, UDP)]  # INVITE again
    ack = request("ACK", to_tag="uas")
    assert layer.receive_request(ack, UDP, 1.4) == []  # absorbed, not passed up
    assert state(txn) is State.CONFIRMED and txn.timers == {Timer.I: 6.4}
    assert layer.receive_request(request("ACK", to_tag="uas"), UDP, 2.0) == []
    assert layer.receive_request(request(), UDP, 2.1) == []  # reordered INVITE absorbed too
    assert run(layer, 100.0) == [(6.4, [TransactionTerminated(txn)])]
    # once gone, a late ACK no longer matches and is passed up like a 2xx ACK
    late = request("ACK", to_tag="uas")
    assert layer.receive_request(late, UDP, 7.0) == [AckReceived(late)]


def test_timer_i_zero_on_reliable() -> None:
    layer = TransactionLayer()
    invite, txn, _ = new_invite_server(layer, TCP)
    layer.send_response(txn, make_response(invite, 603, to_tag="uas"), 0.0)
    assert txn.timers == {Timer.H: 32.0}
    assert layer.receive_request(request("ACK", to_tag="uas"), TCP, 0.5) == [TransactionTerminated(txn)]
    assert len(layer) == 0 and layer.next_timer() is None


@PEERS
def test_invite_server_2xx_accepted_timer_l(peer: Peer) -> None:
    layer = TransactionLayer()
    invite, txn, _ = new_invite_server(layer, peer)
    ok = make_response(invite, 200, to_tag="uas")
    assert layer.send_response(txn, ok, 0.0) == [SendMessage(ok, peer)]
    assert state(txn) is State.ACCEPTED and txn.timers == {Timer.L: 32.0}
    assert layer.receive_request(request(), peer, 0.5) == []  # RFC 6026: INVITE retransmission absorbed
    assert layer.send_response(txn, ok, 0.5) == [SendMessage(ok, peer)]  # the TU's 2xx retransmission
    ack = request("ACK", branch="z9hG4bKack", to_tag="uas")  # a 2xx ACK is its own transaction
    assert layer.receive_request(ack, peer, 0.6) == [AckReceived(ack)]
    assert state(txn) is State.ACCEPTED
    with pytest.raises(ProtocolError):
        layer.send_response(txn, make_response(invite, 486, to_tag="uas"), 1.0)
    assert run(layer, 100.0) == [(32.0, [TransactionTerminated(txn)])]
    with pytest.raises(ProtocolError, match="Terminated"):
        layer.send_response(txn, ok, 33.0)


def test_invite_server_undefined_transitions_raise() -> None:
    layer = TransactionLayer()
    invite, txn, _ = new_invite_server(layer, UDP)
    with pytest.raises(ProtocolError, match="ACK"):  # ACK before any final response
        layer.receive_request(request("ACK"), UDP, 0.1)
    layer.send_response(txn, make_response(invite, 404, to_tag="uas"), 0.2)
    with pytest.raises(ProtocolError, match="1xx from TU"):
        layer.send_response(txn, make_response(invite, 180, to_tag="uas"), 0.3)
    with pytest.raises(ProtocolError, match="2xx from TU") as info:
        layer.send_response(txn, make_response(invite, 200, to_tag="uas"), 0.3)
    assert info.value.status == 500 and info.value.transaction is txn
    with pytest.raises(ValueError):
        layer.send_response(txn, Response(99, "Odd"), 0.3)


def test_transaction_alone_undefined_timer_raises() -> None:
    txn = NonInviteServerTransaction(("k",), request("OPTIONS"), UDP, TimerConfig())
    with pytest.raises(ProtocolError, match="Timer A"):
        txn._dispatch(Timer.A, None, 0.0)


# -------------------------------------------------------------------------- non-INVITE server


@PEERS
def test_non_invite_server_retransmissions_and_timer_j(peer: Peer) -> None:
    layer = TransactionLayer()
    register = request("REGISTER")
    events = layer.receive_request(register, peer, 0.0)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    txn = events[0].transaction
    assert isinstance(txn, NonInviteServerTransaction) and state(txn) is State.TRYING
    assert layer.receive_request(request("REGISTER"), peer, 0.1) == []  # Trying: discarded
    ok = make_response(register, 200, to_tag="reg")
    events = layer.send_response(txn, ok, 1.0)
    assert events[0] == SendMessage(ok, peer) and events[0].message is ok  # no copies
    if peer.reliable:
        assert events[1:] == [TransactionTerminated(txn)] and len(layer) == 0
        return
    assert state(txn) is State.COMPLETED and txn.timers == {Timer.J: 33.0}
    assert layer.receive_request(request("REGISTER"), peer, 2.0) == [SendMessage(ok, peer)]
    # §17.2.2: further finals from the TU are discarded in Completed
    assert layer.send_response(txn, make_response(register, 500), 2.5) == []
    assert run(layer, 100.0) == [(33.0, [TransactionTerminated(txn)])]
    # after Timer J the same request is new again
    assert kinds(layer.receive_request(request("REGISTER"), peer, 40.0)) == ["RequestReceived"]


def test_non_invite_server_proceeding() -> None:
    layer = TransactionLayer()
    bye = request("BYE", to_tag="x")
    (received,) = layer.receive_request(bye, UDP, 0.0)
    assert isinstance(received, RequestReceived)
    txn = received.transaction
    trying = make_response(bye, 100)
    assert layer.send_response(txn, trying, 0.1) == [SendMessage(trying, UDP)]
    assert state(txn) is State.PROCEEDING
    assert layer.receive_request(request("BYE", to_tag="x"), UDP, 0.2) == [SendMessage(trying, UDP)]
    ok = make_response(bye, 200)
    layer.send_response(txn, ok, 0.3)
    with pytest.raises(ProtocolError):
        layer.send_response(txn, make_response(bye, 180), 0.4)


# ------------------------------------------------------------------------------------ matching


def test_cancel_matching() -> None:
    layer = TransactionLayer()
    invite, ist, _ = new_invite_server(layer, UDP)
    cancel = request("CANCEL")
    (received,) = layer.receive_request(cancel, UDP, 1.0)
    assert isinstance(received, RequestReceived)
    cancel_txn = received.transaction
    assert isinstance(cancel_txn, NonInviteServerTransaction)  # not the INVITE's
    assert layer.find_cancel_target(cancel) is ist
    assert layer.find_cancel_target(request("CANCEL", branch="z9hG4bKnope")) is None
    layer.send_response(cancel_txn, make_response(cancel, 200, to_tag="uas"), 1.0)
    layer.send_response(ist, make_response(invite, 487, to_tag="uas"), 1.0)
    layer.receive_request(request("ACK", to_tag="uas"), UDP, 1.1)
    run(layer, 100.0)
    assert layer.find_cancel_target(cancel) is None and len(layer) == 0


def test_sent_by_is_part_of_the_key() -> None:
    layer = TransactionLayer()
    a = request()
    b = parse_message(a.to_bytes().replace(b"192.0.2.1:5060;", b"192.0.2.9:5060;"))
    assert isinstance(b, Request)
    layer.receive_request(a, UDP, 0.0)
    assert kinds(layer.receive_request(b, UDP, 0.0)) == ["SendMessage", "RequestReceived"]
    assert len(layer) == 2


def test_rfc2543_fallback_matching() -> None:
    layer = TransactionLayer()
    invite, txn, _ = new_invite_server(layer, UDP, branch=None)
    assert txn.key[0] == "2543"
    # retransmission: same Request-URI, tags, Call-ID, CSeq, top Via (stamping params ignored)
    assert kinds(layer.receive_request(request(branch=None, via_extra=";received=192.0.2.1"), UDP, 0.1)) == [
        "SendMessage"
    ]
    # any differing field makes a new transaction
    variants = [
        request(branch=None, cseq=2),
        request(branch=None, call_id="other"),
        request(branch=None, from_tag="ft9"),
        request(branch=None, uri="sip:carol@example.com"),
        request(branch=None, to_tag="x"),
    ]
    for variant in variants:
        assert kinds(layer.receive_request(variant, UDP, 0.2))[-1] == "RequestReceived"
    # a non-cookie branch also uses the fallback
    assert kinds(layer.receive_request(request(branch="old1"), UDP, 0.2))[-1] == "RequestReceived"
    assert kinds(layer.receive_request(request(branch="old1"), UDP, 0.3)) == ["SendMessage"]
    cancel = request("CANCEL", branch=None)
    assert layer.find_cancel_target(cancel) is txn
    # ACK matches when its To tag is the tag of the response the transaction sent
    busy = make_response(invite, 486, to_tag="uas")
    layer.send_response(txn, busy, 1.0)
    stranger = request("ACK", branch=None, to_tag="someone-else")
    assert layer.receive_request(stranger, UDP, 1.1) == [AckReceived(stranger)]
    assert state(txn) is State.COMPLETED
    assert layer.receive_request(request("ACK", branch=None, to_tag="uas"), UDP, 1.2) == []
    assert state(txn) is State.CONFIRMED
    run(layer, 10.0)
    assert state(txn) is State.TERMINATED
    assert txn.key not in layer._server and txn.ack_key not in layer._acks


def test_rfc2543_ack_for_2xx_in_accepted_goes_to_tu() -> None:
    layer = TransactionLayer()
    invite, txn, _ = new_invite_server(layer, UDP, branch=None)
    layer.send_response(txn, make_response(invite, 200, to_tag="uas"), 0.0)
    ack = request("ACK", branch=None, to_tag="uas")
    assert layer.receive_request(ack, UDP, 0.1) == [AckReceived(ack)]
    assert state(txn) is State.ACCEPTED


# --------------------------------------------------------------------------------- the layer


def test_layer_timer_heap_across_transactions() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.1, t2=0.4, t4=1.0, d=3.2))
    inv, _ = layer.send_request(request(branch="z9hG4bKi"), UDP, 0.0)
    opt, _ = layer.send_request(request("OPTIONS", branch="z9hG4bKo"), UDP, 0.05)
    assert layer.next_timer() == 0.1
    fired = run(layer, 10.0)
    sends = [(round(at, 9), e.message) for at, evs in fired for e in evs if isinstance(e, SendMessage)]
    assert [at for at, _ in sends] == sorted(at for at, _ in sends)
    # A: 0.1 doubling, no cap; E: 0.1 doubling capped at T2 = 0.4, both until 64*T1
    assert [at for at, m in sends if m is inv.request] == [0.1, 0.3, 0.7, 1.5, 3.1, 6.3]
    e_times = [at for at, m in sends if m is opt.request]
    assert e_times[:4] == [0.15, 0.35, 0.75, 1.15] and e_times[-1] == 6.35 and len(e_times) == 17
    timeouts = [
        (round(at, 9), e.timer) for at, evs in fired for e in evs if isinstance(e, TransactionTimeout)
    ]
    assert timeouts == [(6.4, Timer.B), (6.45, Timer.F)]
    assert state(inv) is state(opt) is State.TERMINATED and len(layer) == 0


def test_handle_timer_late_clock_fires_everything_due() -> None:
    layer = TransactionLayer()
    txn, _ = layer.send_request(request(), UDP, 0.0)
    events = layer.handle_timer(40.0)  # the loop stalled: A (re-armed from now) then B
    assert kinds(events) == ["SendMessage", "TransactionTimeout", "TransactionTerminated"]
    assert state(txn) is State.TERMINATED


def test_register_round_trip_is_cheap() -> None:
    """Create + 200 + terminate on TCP leaves nothing behind (speed is measured in bench/)."""
    layer = TransactionLayer()
    for i in range(200):
        reg = request("REGISTER", branch=f"z9hG4bK{i}")
        (received,) = layer.receive_request(reg, TCP, 0.0)
        assert isinstance(received, RequestReceived)
        layer.send_response(received.transaction, make_response(reg, 200, to_tag="t"), 0.0)
    assert len(layer) == 0 and layer.next_timer() is None


def test_retired_non_invite_server_resends_bytes_until_timer_j() -> None:
    from softswitch.sip.transaction import Retransmit

    layer = TransactionLayer()
    req = request("REGISTER", branch="z9hG4bKret")
    (ev,) = layer.receive_request(req, UDP, 0.0)
    assert isinstance(ev, RequestReceived)
    txn = ev.transaction
    layer.send_response(txn, make_response(req, 200, to_tag="x"), 0.0)
    dest = Peer("udp", "192.0.2.9", 5099)
    assert layer.retire(txn, b"SIP/2.0 200 OK\r\n\r\n", dest)
    assert layer.server_transactions() == [] and len(layer) == 1
    assert layer.next_timer() == pytest.approx(32.0)
    again = layer.receive_request(request("REGISTER", branch="z9hG4bKret"), UDP, 5.0)
    assert again == [Retransmit(b"SIP/2.0 200 OK\r\n\r\n", dest)]
    assert layer.handle_timer(31.9) == [] and len(layer) == 1
    layer.handle_timer(32.0)
    assert len(layer) == 0 and layer.next_timer() is None
    fresh = layer.receive_request(request("REGISTER", branch="z9hG4bKret"), UDP, 33.0)
    assert kinds(fresh) == ["RequestReceived"]  # after Timer J the branch is new again


def test_only_completed_non_invite_server_transactions_retire() -> None:
    layer = TransactionLayer()
    inv = request("INVITE", branch="z9hG4bKinv")
    ist = next(e.transaction for e in layer.receive_request(inv, UDP, 0.0) if isinstance(e, RequestReceived))
    assert not layer.retire(ist, b"x", UDP)
    reg = request("REGISTER", branch="z9hG4bKtcp")
    nist = next(e.transaction for e in layer.receive_request(reg, TCP, 0.0) if isinstance(e, RequestReceived))
    assert not layer.retire(nist, b"x", TCP)  # still Trying
    layer.send_response(nist, make_response(reg, 200), 0.0)
    assert not layer.retire(nist, b"x", TCP)  # reliable: already Terminated
