"""RFC 3261 §12 dialogs and RFC 4028 session timers: bytes in, bytes out, no sockets."""

from __future__ import annotations

from typing import TypedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.sip.dialog import (
    Dialog,
    DialogError,
    DialogId,
    DialogState,
    DialogTable,
    Refresher,
    SessionExpires,
    SessionTimer,
    dialog_id_of_request,
    dialog_id_of_response,
    make_cancel,
    negotiate_session_timer,
    parse_min_se,
    parse_session_expires,
    session_timer_from_response,
    session_timer_request_headers,
    session_timer_retry_interval,
)
from softswitch.sip.errors import BadRequest, SipError
from softswitch.sip.message import Request, Response, make_response, parse_message
from softswitch.sip.peer import Peer

CALLER = Peer("udp", "192.0.2.10", 5060)
CALLEE = Peer("tcp", "198.51.100.20", 5060, connection=3)
SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def wire(text: str, body: bytes = b"") -> bytes:
    head = "\r\n".join(line.strip() for line in text.strip().splitlines())
    return f"{head}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def req(text: str, body: bytes = b"") -> Request:
    msg = parse_message(wire(text, body))
    assert isinstance(msg, Request)
    return msg


def resp(text: str, body: bytes = b"") -> Response:
    msg = parse_message(wire(text, body))
    assert isinstance(msg, Response)
    return msg


def state(dialog: Dialog) -> DialogState:
    """The state, read through a call so mypy does not keep an earlier narrowing."""
    return dialog.state


def roundtrip(message: Request) -> Request:
    msg = parse_message(message.to_bytes())
    assert isinstance(msg, Request)
    return msg


def sent(response: Response) -> Response:
    """A response we built, as the peer will see it."""
    msg = parse_message(response.to_bytes())
    assert isinstance(msg, Response)
    return msg


class ViaArgs(TypedDict):
    via_host: str
    via_port: int
    transport: str


VIA: ViaArgs = {"via_host": "198.51.100.1", "via_port": 5060, "transport": "udp"}

# -- caller side: Alice -> p1 -> p2 -> B2BUA (we are the UAS)

ALICE_INVITE = """
    INVITE sip:bob@198.51.100.1 SIP/2.0
    Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2
    Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bKp1, SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1;rport=5060
    Max-Forwards: 68
    Record-Route: <sip:p2.example.com;lr>
    Record-Route: <sip:p1.example.com;lr;ftag=1928301774>
    From: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=1928301774
    To: Bob <sip:bob@biloxi.example.com>
    Call-ID: a84b4c76e66710@pc33.atlanta.example.com
    CSeq: 314159 INVITE
    Contact: <sip:alice@192.0.2.10:5060;transport=udp;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
    Supported: timer, replaces
    Content-Type: application/sdp
"""


def alice_invite() -> Request:
    return req(ALICE_INVITE, SDP)


def uas_answer(invite: Request, status: int = 200, tag: str = "b2b-a") -> Response:
    response = make_response(invite, status, to_tag=tag)
    for rr in invite.headers.get_all("Record-Route"):
        response.headers.add("Record-Route", rr)  # §12.1.1: the UAS copies Record-Route
    response.headers.add("Contact", "<sip:b2bua@198.51.100.1:5060>")
    return sent(response)


def uas_dialog() -> Dialog:
    invite = alice_invite()
    return Dialog.from_uas(invite, uas_answer(invite), CALLER)


def test_uas_dialog_from_invite_and_200() -> None:
    d = uas_dialog()
    assert d.state is DialogState.CONFIRMED
    assert not d.is_uac
    assert d.id == DialogId("a84b4c76e66710@pc33.atlanta.example.com", "b2b-a", "1928301774")
    assert d.local_uri == "Bob <sip:bob@biloxi.example.com>;tag=b2b-a"
    assert d.remote_uri == '"Alice Liddell" <sip:alice@atlanta.example.com>;tag=1928301774'
    assert d.remote_target == "sip:alice@192.0.2.10:5060;transport=udp;ob"
    assert d.route_set == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr;ftag=1928301774>"]
    assert (d.local_seq, d.remote_seq, d.invite_cseq) == (0, 314159, 314159)
    assert d.local_contact == "<sip:b2bua@198.51.100.1:5060>"
    assert d.peer == CALLER
    assert not d.secure


def test_uas_bye_towards_caller() -> None:
    d = uas_dialog()
    bye = roundtrip(d.new_request("BYE", branch="z9hG4bKbye1", **VIA))
    assert bye.method == "BYE"
    assert bye.uri == "sip:alice@192.0.2.10:5060;transport=udp;ob"
    assert bye.headers.get_all("Route") == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr;ftag=1928301774>",
    ]
    assert bye.from_.tag == "b2b-a" and bye.to.tag == "1928301774"
    assert bye.from_.display == "Bob" and str(bye.from_.uri) == "sip:bob@biloxi.example.com"
    assert bye.to.display == "Alice Liddell"
    assert bye.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert (bye.cseq.seq, bye.cseq.method) == (1, "BYE")
    assert bye.max_forwards == 70
    assert bye.top_via.branch == "z9hG4bKbye1" and bye.top_via.sent_by == "198.51.100.1:5060"
    assert "Contact" not in bye.headers  # Contact is not allowed in BYE
    assert d.state is DialogState.TERMINATED  # §15.1.1: terminated once BYE is sent
    # the BYE matches the caller's view of the dialog
    assert dialog_id_of_request(bye) == DialogId(d.call_id, "1928301774", "b2b-a")
    with pytest.raises(DialogError):
        d.new_request("INFO", branch="z9hG4bKx", **VIA)


def test_uas_early_dialog_then_confirmed() -> None:
    invite = alice_invite()
    ringing = uas_answer(invite, 180)
    d = Dialog.from_uas(invite, ringing, CALLER)
    assert d.state is DialogState.EARLY
    d.response_sent(uas_answer(invite, 200))
    assert state(d) is DialogState.CONFIRMED


def test_uas_early_dialog_rejected() -> None:
    invite = alice_invite()
    d = Dialog.from_uas(invite, uas_answer(invite, 183), CALLER)
    d.response_sent(uas_answer(invite, 486))
    assert d.state is DialogState.TERMINATED


def test_uas_requires_contact_and_tagged_response() -> None:
    no_contact = req(ALICE_INVITE.replace("Contact:", "X-Contact:"), SDP)
    with pytest.raises(BadRequest):
        Dialog.from_uas(no_contact, uas_answer(no_contact), CALLER)
    invite = alice_invite()
    with pytest.raises(DialogError):
        Dialog.from_uas(invite, sent(make_response(invite, 180)), CALLER)  # no To tag
    with pytest.raises(DialogError):
        Dialog.from_uas(invite, uas_answer(invite, 100), CALLER)


def test_sips_over_tls_is_secure() -> None:
    invite = req(ALICE_INVITE.replace("INVITE sip:bob@", "INVITE sips:bob@"), SDP)
    tls = Peer("tls", "192.0.2.10", 5061, connection=9)
    assert Dialog.from_uas(invite, uas_answer(invite), tls).secure
    assert not Dialog.from_uas(invite, uas_answer(invite), CALLER).secure


def test_out_of_order_cseq_rejected_with_500() -> None:
    d = uas_dialog()
    info = req(f"""
        INFO sip:b2bua@198.51.100.1:5060 SIP/2.0
        Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKi1
        From: <sip:alice@atlanta.example.com>;tag=1928301774
        To: <sip:bob@biloxi.example.com>;tag=b2b-a
        Call-ID: {d.call_id}
        CSeq: 314158 INFO
    """)
    with pytest.raises(SipError) as err:
        d.accept_request(info)
    assert err.value.status == 500
    assert d.remote_seq == 314159
    later = req(wire_text(info).replace("314158 INFO", "314165 INFO"))
    d.accept_request(later)  # gaps are fine
    assert d.remote_seq == 314165
    ack = req(wire_text(info).replace("314158 INFO", "314159 ACK").replace("INFO sip", "ACK sip"))
    d.accept_request(ack)  # an ACK carries its INVITE's CSeq
    assert d.remote_seq == 314165 and d.state is DialogState.CONFIRMED


def wire_text(message: Request) -> str:
    """The message head as text, without Content-Length (``req`` adds it back)."""
    head = message.to_bytes().decode().split("\r\n\r\n")[0]
    return "\n".join(line for line in head.split("\r\n") if not line.startswith("Content-Length"))


def test_reinvite_refreshes_target_and_bye_terminates() -> None:
    d = uas_dialog()
    table = DialogTable()
    table.add(d)
    reinvite = req(f"""
        INVITE sip:b2bua@198.51.100.1:5060 SIP/2.0
        Via: SIP/2.0/UDP p2.example.com;branch=z9hG4bKp2r
        Route: <sip:p2.example.com;lr>
        From: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=1928301774
        To: Bob <sip:bob@biloxi.example.com>;tag=b2b-a
        Call-ID: {d.call_id}
        CSeq: 314160 INVITE
        Contact: <sip:alice@[2001:db8::10]:5070;transport=udp>
    """)
    assert table.match_request(reinvite) is d
    d.accept_request(reinvite)
    assert d.remote_target == "sip:alice@[2001:db8::10]:5070;transport=udp"
    assert d.remote_seq == 314160
    assert d.route_set[0] == "<sip:p2.example.com;lr>"  # route set never changes after creation
    info = req(wire_text(reinvite).replace("INVITE sip", "INFO sip").replace("314160 INVITE", "314161 INFO"))
    info.headers.set("Contact", "<sip:elsewhere@192.0.2.99>")
    d.accept_request(info)  # INFO is not a target refresh request
    assert d.remote_target == "sip:alice@[2001:db8::10]:5070;transport=udp"
    bye = req(wire_text(reinvite).replace("INVITE sip", "BYE sip").replace("314160 INVITE", "314162 BYE"))
    d.accept_request(bye)
    assert d.state is DialogState.TERMINATED
    with pytest.raises(SipError) as err:
        d.accept_request(bye)
    assert err.value.status == 481
    table.remove(d)
    assert table.match_request(bye) is None and len(table) == 0


def test_contact_headers_and_method_are_not_copied_to_request_uri() -> None:
    invite = req(
        ALICE_INVITE.replace(
            "Contact: <sip:alice@192.0.2.10:5060;transport=udp;ob>",
            "Contact: <sip:alice@192.0.2.10;method=INVITE?Subject=hi>",
        ),
        SDP,
    )
    d = Dialog.from_uas(invite, uas_answer(invite), CALLER)
    assert d.remote_target == "sip:alice@192.0.2.10"


# -- callee side: B2BUA -> ss1 -> ss2 -> Carol (we are the UAC)

B2B_INVITE = """
    INVITE sip:carol@chicago.example.com SIP/2.0
    Via: SIP/2.0/TCP 198.51.100.1:5060;branch=z9hG4bKb2b1;rport
    Max-Forwards: 70
    Route: <sip:ss1.example.com;lr>
    From: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=b2b-b
    To: <sip:carol@chicago.example.com>
    Call-ID: leg-b-7f3a@198.51.100.1
    CSeq: 1 INVITE
    Contact: <sip:b2bua@198.51.100.1:5060;transport=tcp>
    Supported: timer
    Session-Expires: 1800
    Content-Type: application/sdp
"""


def b2b_invite() -> Request:
    return req(B2B_INVITE, SDP)


def callee_response(
    status: int,
    tag: str | None = "carol-1",
    contact: str | None = "<sip:carol@[2001:db8::20]:5062;transport=tcp>;expires=3600",
    record_route: tuple[str, ...] = ("<sip:ss2.example.com;lr>", "<sip:ss1.example.com;lr>"),
    extra: str = "",
) -> Response:
    lines = [
        f"SIP/2.0 {status} Whatever",
        "Via: SIP/2.0/TCP 198.51.100.1:5060;branch=z9hG4bKb2b1;rport=5060;received=198.51.100.1",
        *(f"Record-Route: {rr}" for rr in record_route),
        'From: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=b2b-b',
        "To: <sip:carol@chicago.example.com>" + (f";tag={tag}" if tag else ""),
        "Call-ID: leg-b-7f3a@198.51.100.1",
        "CSeq: 1 INVITE",
    ]
    if contact:
        lines.append(f"Contact: {contact}")
    if extra:
        lines.append(extra)
    return resp("\n".join(lines))


def test_uac_dialog_from_200_with_ipv6_contact() -> None:
    invite = b2b_invite()
    ok = callee_response(200)
    d = Dialog.from_uac(invite, ok, CALLEE)
    assert d.is_uac and d.state is DialogState.CONFIRMED
    assert d.id == DialogId("leg-b-7f3a@198.51.100.1", "b2b-b", "carol-1")
    assert dialog_id_of_response(ok) == d.id
    assert d.remote_target == "sip:carol@[2001:db8::20]:5062;transport=tcp"
    assert d.route_set == ["<sip:ss1.example.com;lr>", "<sip:ss2.example.com;lr>"]  # reversed
    assert (d.local_seq, d.remote_seq) == (1, None)
    assert d.local_uri == '"Alice Liddell" <sip:alice@atlanta.example.com>;tag=b2b-b'
    assert d.remote_uri == "<sip:carol@chicago.example.com>;tag=carol-1"
    assert d.local_contact == "<sip:b2bua@198.51.100.1:5060;transport=tcp>"


def test_uac_in_dialog_requests() -> None:
    d = Dialog.from_uac(b2b_invite(), callee_response(200), CALLEE)
    tcp: ViaArgs = {"via_host": "198.51.100.1", "via_port": 5060, "transport": "tcp"}
    info = roundtrip(
        d.new_request(
            "INFO",
            body=b"Signal=5\r\nDuration=160\r\n",
            content_type="application/dtmf-relay",
            extra_headers=[("X-Leg", "b")],
            branch="z9hG4bKinfo",
            **tcp,
        )
    )
    assert info.uri == "sip:carol@[2001:db8::20]:5062;transport=tcp"
    assert info.headers.get_list("Route") == ["<sip:ss1.example.com;lr>", "<sip:ss2.example.com;lr>"]
    assert (info.cseq.seq, info.cseq.method) == (2, "INFO")
    assert info.from_.tag == "b2b-b" and info.to.tag == "carol-1"
    assert info.top_via.transport == "TCP" and info.top_via.rport == ""
    assert info.headers.get("Content-Type") == "application/dtmf-relay"
    assert info.headers.get("X-Leg") == "b"
    assert info.body == b"Signal=5\r\nDuration=160\r\n"
    assert dialog_id_of_response(sent(make_response(info, 200))) == d.id
    reinvite = roundtrip(
        d.new_request("INVITE", body=SDP, content_type="application/sdp", branch="z9hG4bKre", **tcp)
    )
    assert reinvite.cseq.seq == 3
    assert reinvite.headers.get("Contact") == "<sip:b2bua@198.51.100.1:5060;transport=tcp>"
    assert d.local_seq == 3


def test_ack_for_2xx() -> None:
    invite = b2b_invite()
    d = Dialog.from_uac(invite, callee_response(200), CALLEE)
    ack = roundtrip(d.ack_for_2xx(invite.cseq.seq, branch="z9hG4bKack1", **VIA))
    assert ack.method == "ACK"
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert ack.top_via.branch == "z9hG4bKack1" != invite.top_via.branch
    assert len(ack.vias) == 1
    assert ack.uri == d.remote_target
    assert ack.headers.get_list("Route") == d.route_set
    assert ack.from_.tag == "b2b-b" and ack.to.tag == "carol-1"
    assert ack.call_id == invite.call_id
    assert d.local_seq == 1  # ACK does not consume a sequence number
    assert d.new_request("OPTIONS", branch="z9hG4bKo", **VIA).cseq.seq == 2
    with pytest.raises(DialogError):
        d.new_request("ACK", branch="z9hG4bKx", **VIA)


def test_uac_early_dialog_then_confirmed_by_200() -> None:
    invite = b2b_invite()
    ringing = callee_response(
        180, contact="<sip:carol@192.0.2.50:5062>", record_route=("<sip:ss1.example.com;lr>",)
    )
    d = Dialog.from_uac(invite, ringing, CALLEE)
    assert d.state is DialogState.EARLY
    assert d.route_set == ["<sip:ss1.example.com;lr>"]
    assert d.remote_target == "sip:carol@192.0.2.50:5062"
    d.response_received(callee_response(200))
    assert state(d) is DialogState.CONFIRMED
    # §13.2.2.4: route set and target recomputed from the 2xx
    assert d.route_set == ["<sip:ss1.example.com;lr>", "<sip:ss2.example.com;lr>"]
    assert d.remote_target == "sip:carol@[2001:db8::20]:5062;transport=tcp"


def test_uac_early_dialog_terminated_by_failure() -> None:
    d = Dialog.from_uac(b2b_invite(), callee_response(183), CALLEE)
    d.response_received(callee_response(486))
    assert d.state is DialogState.TERMINATED


def test_uac_missing_contact_falls_back_to_request_uri() -> None:
    invite = b2b_invite()
    d = Dialog.from_uac(invite, callee_response(180, contact=None), CALLEE)
    assert d.remote_target == "sip:carol@chicago.example.com"
    with pytest.raises(BadRequest):
        Dialog.from_uac(invite, callee_response(200, tag=None), CALLEE)


def test_target_refresh_on_2xx_to_reinvite() -> None:
    d = Dialog.from_uac(b2b_invite(), callee_response(200), CALLEE)
    reinvite = d.new_request("INVITE", body=SDP, content_type="application/sdp", branch="z9hG4bKre", **VIA)
    ok = make_response(reinvite, 200)
    ok.headers.add("Contact", "<sip:carol@192.0.2.77:5080;transport=tcp>")
    ok.headers.add("Record-Route", "<sip:evil.example.com;lr>")
    d.response_received(sent(ok))
    assert d.remote_target == "sip:carol@192.0.2.77:5080;transport=tcp"
    assert d.route_set == ["<sip:ss1.example.com;lr>", "<sip:ss2.example.com;lr>"]
    # a 2xx to a non-refresh request leaves the target alone
    info = d.new_request("INFO", branch="z9hG4bKi", **VIA)
    ok = make_response(info, 200)
    ok.headers.add("Contact", "<sip:other@192.0.2.1>")
    d.response_received(sent(ok))
    assert d.remote_target == "sip:carol@192.0.2.77:5080;transport=tcp"
    assert d.state is DialogState.CONFIRMED


@pytest.mark.parametrize("status", [408, 481])
def test_408_481_terminate(status: int) -> None:
    d = Dialog.from_uac(b2b_invite(), callee_response(200), CALLEE)
    info = d.new_request("INFO", branch="z9hG4bKi", **VIA)
    d.response_received(sent(make_response(info, status)))
    assert d.state is DialogState.TERMINATED


def test_uac_receives_bye_from_callee() -> None:
    d = Dialog.from_uac(b2b_invite(), callee_response(200), CALLEE)
    bye = req("""
        BYE sip:b2bua@198.51.100.1:5060;transport=tcp SIP/2.0
        Via: SIP/2.0/TCP ss2.example.com;branch=z9hG4bKs2
        Route: <sip:ss1.example.com;lr>
        From: <sip:carol@chicago.example.com>;tag=carol-1
        To: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=b2b-b
        Call-ID: leg-b-7f3a@198.51.100.1
        CSeq: 1 BYE
    """)
    assert dialog_id_of_request(bye) == d.id
    assert d.remote_seq is None
    d.accept_request(bye)  # the callee's sequence space is independent of ours
    assert d.remote_seq == 1 and d.state is DialogState.TERMINATED


def test_strict_router_first_in_route_set() -> None:
    invite = b2b_invite()
    d = Dialog.from_uac(
        invite,
        callee_response(200, record_route=("<sip:loose.example.com;lr>", "<sip:strict.example.com>")),
        CALLEE,
    )
    assert d.route_set == ["<sip:strict.example.com>", "<sip:loose.example.com;lr>"]
    bye = roundtrip(d.new_request("BYE", branch="z9hG4bKb", **VIA))
    assert bye.uri == "sip:strict.example.com"
    assert bye.headers.get_list("Route") == [
        "<sip:loose.example.com;lr>",
        "<sip:carol@[2001:db8::20]:5062;transport=tcp>",
    ]


def test_no_route_set() -> None:
    d = Dialog.from_uac(b2b_invite(), callee_response(200, record_route=()), CALLEE)
    bye = roundtrip(
        d.new_request("BYE", branch="z9hG4bKb", via_host="2001:db8::1", via_port=5060, transport="udp")
    )
    assert "Route" not in bye.headers
    assert bye.uri == "sip:carol@[2001:db8::20]:5062;transport=tcp"
    assert bye.top_via.host == "[2001:db8::1]"


# -- forking and the table


def test_forking_two_to_tags() -> None:
    invite = b2b_invite()
    table = DialogTable()
    a = table.uac_response(
        invite, callee_response(180, tag="fork-a", contact="<sip:carol@192.0.2.1>"), CALLEE
    )
    b = table.uac_response(
        invite, callee_response(183, tag="fork-b", contact="<sip:carol@192.0.2.2>"), CALLEE
    )
    assert a is not None and b is not None and a is not b
    assert a.id != b.id and a.id.local_tag == b.id.local_tag == "b2b-b"
    assert {d.remote_target for d in table.forks(invite.call_id, "b2b-b")} == {
        "sip:carol@192.0.2.1",
        "sip:carol@192.0.2.2",
    }
    assert table.uac_response(invite, callee_response(100, tag=None), CALLEE) is None
    # a second 180 on fork a updates it rather than creating a third dialog
    again = table.uac_response(
        invite, callee_response(180, tag="fork-a", contact="<sip:carol@192.0.2.3>"), CALLEE
    )
    assert again is a and a.remote_target == "sip:carol@192.0.2.3" and len(table) == 2
    ok = table.uac_response(invite, callee_response(200, tag="fork-b"), CALLEE)
    assert ok is b and b.state is DialogState.CONFIRMED and a.state is DialogState.EARLY
    assert table.match_response(callee_response(200, tag="fork-b")) is b
    assert table.match_response(callee_response(200, tag="fork-c")) is None


def test_failure_removes_early_forks() -> None:
    invite = b2b_invite()
    table = DialogTable()
    a = table.uac_response(invite, callee_response(180, tag="fork-a"), CALLEE)
    table.uac_response(invite, callee_response(180, tag="fork-b"), CALLEE)
    assert len(table) == 2
    assert table.uac_response(invite, callee_response(480, tag="fork-x"), CALLEE) is None
    assert len(table) == 0 and a is not None and a.state is DialogState.TERMINATED
    assert table.forks(invite.call_id, "b2b-b") == []


def test_table_add_remove() -> None:
    table = DialogTable()
    d = uas_dialog()
    table.add(d)
    assert d.id in table and table.get(d.id) is d and list(table) == [d]
    with pytest.raises(DialogError):
        table.add(uas_dialog())
    table.remove(uas_dialog())  # an equal-keyed but different object: no-op
    assert len(table) == 1
    table.remove(d)
    table.remove(d)
    assert len(table) == 0 and table.get(d.id) is None


def test_out_of_dialog_request_has_no_id() -> None:
    assert dialog_id_of_request(alice_invite()) is None
    assert dialog_id_of_response(callee_response(100, tag=None)) is None
    assert DialogTable().match_request(alice_invite()) is None


# -- CANCEL (§9.1)


def test_make_cancel() -> None:
    invite = req(
        B2B_INVITE.replace(
            "Route: <sip:ss1.example.com;lr>",
            "Route: <sip:ss1.example.com;lr>\nRoute: <sip:ss9.example.com;lr>",
        ),
        SDP,
    )
    cancel = roundtrip(make_cancel(invite))
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    assert cancel.headers.get_all("Via") == ["SIP/2.0/TCP 198.51.100.1:5060;branch=z9hG4bKb2b1;rport"]
    assert (cancel.cseq.seq, cancel.cseq.method) == (1, "CANCEL")
    assert cancel.headers.get("From") == invite.headers.get("From")
    assert cancel.headers.get("To") == "<sip:carol@chicago.example.com>" and cancel.to.tag is None
    assert cancel.call_id == invite.call_id
    assert cancel.headers.get_all("Route") == ["<sip:ss1.example.com;lr>", "<sip:ss9.example.com;lr>"]
    assert cancel.max_forwards == 70
    assert cancel.body == b"" and "Contact" not in cancel.headers and "Content-Type" not in cancel.headers


def test_make_cancel_keeps_only_top_via() -> None:
    invite = req("""
        INVITE sip:x@example.com SIP/2.0
        Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKtop, SIP/2.0/UDP b.example.com;branch=z9hG4bKlow
        From: <sip:y@example.com>;tag=1
        To: <sip:x@example.com>
        Call-ID: c1
        CSeq: 7 INVITE
    """)
    cancel = roundtrip(make_cancel(invite))
    assert [v.branch for v in cancel.vias] == ["z9hG4bKtop"]
    assert str(cancel.cseq) == "7 CANCEL" and "Route" not in cancel.headers


# -- RFC 4028 session timers


def timer_invite(*extra: str) -> Request:
    text = """
        INVITE sip:bob@198.51.100.1 SIP/2.0
        Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKst
        From: <sip:alice@atlanta.example.com>;tag=1
        To: <sip:bob@biloxi.example.com>
        Call-ID: st-1
        CSeq: 1 INVITE
        Contact: <sip:alice@192.0.2.10>
    """
    return req(text + "\n".join(extra))


def test_no_session_timer() -> None:
    assert negotiate_session_timer(timer_invite()) is None
    assert negotiate_session_timer(timer_invite("Supported: replaces, 100rel")) is None
    forced = negotiate_session_timer(timer_invite(), always=True)
    assert forced == SessionTimer(1800, Refresher.UAS, require=False)
    assert forced.we_refresh(uas=True) and not forced.we_refresh(uas=False)
    assert forced.response_headers() == [("Session-Expires", "1800;refresher=uas")]


def test_uac_asks_1800_refresher_uac() -> None:
    invite = timer_invite("Supported: timer", "Session-Expires: 1800;refresher=uac", "Min-SE: 90")
    timer = negotiate_session_timer(invite)
    assert timer == SessionTimer(1800, Refresher.UAC, require=True)
    assert not timer.we_refresh(uas=True)
    assert timer.refresh_after == 900 and timer.expire_after == 1768
    ok = make_response(invite, 200, to_tag="t")
    for name, value in timer.response_headers():
        ok.headers.add(name, value)
    data = ok.to_bytes()
    assert b"Session-Expires: 1800;refresher=uac\r\n" in data and b"Require: timer\r\n" in data
    parsed = parse_message(data)
    assert isinstance(parsed, Response)
    assert session_timer_from_response(parsed) == timer  # what the UAC reads back


def test_session_timer_too_small_gives_422() -> None:
    invite = timer_invite("Supported: timer", "Session-Expires: 60")
    with pytest.raises(SipError) as err:
        negotiate_session_timer(invite)
    assert err.value.status == 422 and err.value.reason == "Session Interval Too Small"
    assert err.value.headers == [("Min-SE", "90")]
    rejection = make_response(invite, err.value.status, err.value.reason, to_tag="t")
    for name, value in err.value.headers:
        rejection.headers.add(name, value)
    back = parse_message(rejection.to_bytes())
    assert isinstance(back, Response) and back.status == 422
    # the UAC retries with our minimum
    assert session_timer_retry_interval(back, 60) == 90
    with pytest.raises(SipError) as err:
        negotiate_session_timer(timer_invite("Supported: timer", "Session-Expires: 200"), min_se=300)
    assert err.value.headers == [("Min-SE", "300")]


def test_min_se_raises_our_value() -> None:
    with_se = timer_invite("Supported: timer", "Session-Expires: 3600", "Min-SE: 2400")
    assert negotiate_session_timer(with_se) == SessionTimer(2400, Refresher.UAC, require=True)
    without_se = timer_invite("Supported: timer", "Min-SE: 2400")
    assert negotiate_session_timer(without_se, prefer=Refresher.UAS) == SessionTimer(
        2400, Refresher.UAS, True
    )
    assert negotiate_session_timer(timer_invite("Supported: timer")) == SessionTimer(
        1800, Refresher.UAC, True
    )


def test_interval_reduced_but_never_raised() -> None:
    long = timer_invite("Supported: timer", "Session-Expires: 7200;refresher=uas")
    assert negotiate_session_timer(long) == SessionTimer(1800, Refresher.UAS, require=True)
    short = timer_invite("k: timer", "x: 600")  # compact forms
    assert negotiate_session_timer(short) == SessionTimer(600, Refresher.UAC, require=True)


def test_session_expires_without_uac_support() -> None:
    # inserted by a proxy: the UAS refreshes, no Require, and no 422 the UAC could not handle
    invite = timer_invite("Session-Expires: 60;refresher=uac")
    assert negotiate_session_timer(invite) == SessionTimer(60, Refresher.UAS, require=False)


def test_require_timer_counts_as_support() -> None:
    invite = timer_invite("Require: timer", "Session-Expires: 1800")
    assert negotiate_session_timer(invite, prefer=Refresher.UAS) == SessionTimer(1800, Refresher.UAS, True)


def test_session_timer_intervals() -> None:
    assert SessionTimer(90, Refresher.UAC).expire_after == 60
    assert SessionTimer(90, Refresher.UAC).refresh_after == 45
    assert SessionTimer(3600, Refresher.UAS).expire_after == 3568


def test_uac_side_helpers() -> None:
    assert session_timer_request_headers(1800, 90) == [("Session-Expires", "1800"), ("Min-SE", "90")]
    ok = callee_response(200, extra="Session-Expires: 1200;refresher=uas")
    assert session_timer_from_response(ok) == SessionTimer(1200, Refresher.UAS, require=False)
    assert session_timer_from_response(callee_response(200)) is None
    bare = callee_response(200, extra="Session-Expires: 1200")
    assert session_timer_from_response(bare) == SessionTimer(1200, Refresher.UAC)
    with pytest.raises(BadRequest):
        session_timer_retry_interval(callee_response(422), 1800)


@pytest.mark.parametrize("value", ["", "abc", "0", "-5", "1800;refresher=both", "1800;;", "12345678901"])
def test_bad_session_expires(value: str) -> None:
    with pytest.raises(BadRequest):
        parse_session_expires(value)


def test_parse_session_expires_and_min_se() -> None:
    assert parse_session_expires(" 1800 ; Refresher=UAS ;x=1") == SessionExpires(1800, Refresher.UAS)
    assert parse_session_expires("90") == SessionExpires(90)
    assert parse_min_se("90;lr") == 90
    with pytest.raises(BadRequest):
        parse_min_se("ninety")
    with pytest.raises(BadRequest):
        negotiate_session_timer(timer_invite("Supported: timer", "Min-SE: soon"))


@given(st.integers(1, 2**32 - 1), st.sampled_from([None, Refresher.UAC, Refresher.UAS]))
def test_session_expires_roundtrip(interval: int, refresher: Refresher | None) -> None:
    se = SessionExpires(interval, refresher)
    assert parse_session_expires(str(se)) == se


@given(st.integers(90, 100_000), st.integers(90, 10_000), st.integers(90, 10_000))
def test_negotiated_interval_bounds(requested: int, their_min: int, our_default: int) -> None:
    invite = timer_invite("Supported: timer", f"Session-Expires: {requested}", f"Min-SE: {their_min}")
    timer = negotiate_session_timer(invite, our_default=our_default)
    assert timer is not None
    assert timer.interval <= requested  # never raised
    assert timer.interval >= min(requested, max(90, their_min))  # never reduced below a minimum
    assert 0 < timer.expire_after < timer.interval and timer.refresh_after < timer.expire_after
