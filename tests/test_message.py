"""Message model, serialisation, stream framing and the stack's routing (sans-I/O)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from softswitch.sip.headers import parse_vias
from softswitch.sip.message import (
    Headers,
    Request,
    Response,
    StreamFramer,
    canonical_name,
    make_response,
    parse_message,
)
from softswitch.sip.peer import Peer
from softswitch.sip.stack import SipStack, Transmit, response_destination

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b't: "Bob" <sip:bob@biloxi.example.com>\r\n'
    b"f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"i: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"m: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Subject: a\r\n  folded\r\n\tline\r\n"
    b"X-Custom-Thing: Kept  Verbatim\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n\r\nv=0\r\n"
)


def test_compact_names_folding_and_unknown_headers() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.headers.get("Subject") == "a folded line"
    assert msg.headers.get("x-custom-thing") == "Kept  Verbatim"
    assert ("X-Custom-Thing", "Kept  Verbatim") in list(msg.headers)
    assert msg.to.display == "Bob" and msg.from_.tag == "1928301774"
    assert msg.body == b"v=0\r"  # Content-Length wins over the datagram's trailing bytes
    assert canonical_name("i") == "Call-ID" and canonical_name("CALL-id") == "Call-ID"


def test_serialise_round_trip_sets_content_length() -> None:
    msg = parse_message(INVITE)
    msg.body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    again = parse_message(msg.to_bytes())
    assert again.body == msg.body
    assert again.headers.get("Content-Length") == str(len(msg.body))
    assert list(again.headers) == list(msg.headers)


def test_headers_editing() -> None:
    h = Headers([("Via", "a"), ("Route", "<sip:r1>, <sip:r2>"), ("Via", "b")])
    h.prepend("Via", "top")
    assert h.get_all("Via") == ["top", "a", "b"]
    assert h.get_list("Route") == ["<sip:r1>", "<sip:r2>"]
    h.replace_first("Via", "new")
    h.set("Route", "<sip:x>")
    assert list(h) == [("Via", "new"), ("Via", "a"), ("Route", "<sip:x>"), ("Via", "b")]
    assert h.remove("via") == 3 and "Via" not in h


def test_make_response_copies_dialog_headers_and_adds_tag() -> None:
    req = parse_message(INVITE)
    assert isinstance(req, Request)
    resp = make_response(req, 486, to_tag="xyz")
    assert [name for name, _ in resp.headers] == ["Via", "To", "From", "Call-ID", "CSeq"]
    assert resp.to.tag == "xyz" and resp.reason == "Busy Here"
    assert make_response(req, 100, to_tag="xyz").to.tag is None
    parsed = parse_message(resp.to_bytes())
    assert isinstance(parsed, Response) and parsed.status == 486


def test_stream_framer_cuts_by_content_length_across_chunks() -> None:
    one = parse_message(INVITE).to_bytes()
    stream = b"\r\n\r\n" + one + one  # keep-alive then two messages
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(0, len(stream), 7):
        out += framer.feed(stream[i : i + 7])
    assert out == [one, one]


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30))
def test_stream_framer_any_chunking(cuts: list[int]) -> None:
    one = parse_message(INVITE).to_bytes()
    stream = one * 3
    framer = StreamFramer()
    out: list[bytes] = []
    pos = 0
    for n in cuts * 10:
        out += framer.feed(stream[pos : pos + n])
        pos += n
    out += framer.feed(stream[pos:])
    assert out == [one, one, one]


def test_response_destination_rules() -> None:
    src = Peer("udp", "192.0.2.7", 40000)
    (via,) = parse_vias("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;received=192.0.2.7;rport=40000")
    assert response_destination(via, src) == Peer("udp", "192.0.2.7", 40000)
    (via,) = parse_vias("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;received=192.0.2.7")
    assert response_destination(via, src) == Peer("udp", "192.0.2.7", 5062)
    (via,) = parse_vias("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bKa")
    assert response_destination(via, src) == Peer("udp", "2001:db8::1", 5060)
    tcp = Peer("tcp", "192.0.2.7", 40001, connection=9)
    assert response_destination(via, tcp) is tcp  # stream: the same connection


def test_stack_answers_unparseable_request_with_400_when_addressable() -> None:
    stack = SipStack()
    bad = INVITE.replace(b"SIP/2.0\r\nv:", b"SIP/2.0\r\n bad continuation\r\nv:")
    out = stack.receive(bad, Peer("udp", "127.0.0.1", 5099), 0.0)
    assert len(out) == 1 and isinstance(out[0], Transmit)
    resp = parse_message(out[0].data)
    assert isinstance(resp, Response) and resp.status == 400
    assert resp.reason == "Continuation line before first header"
    assert out[0].peer == Peer("udp", "127.0.0.1", 5099)


def test_stack_never_answers_garbage_acks_or_responses() -> None:
    stack = SipStack()
    peer = Peer("udp", "127.0.0.1", 5099)
    assert stack.receive(b"\xff\xfe\x00", peer, 0.0) == []
    assert stack.receive(b"SIP/2.0 999 Nope\r\n\r\n", peer, 0.0) == []
    ack = INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"314159 INVITE", b"314159 ACK")
    assert stack.receive(ack.replace(b"CSeq: 314159 ACK", b"CSeq: x ACK"), peer, 0.0) == []


def test_stack_rejects_cseq_method_mismatch() -> None:
    stack = SipStack()
    out = stack.receive(INVITE.replace(b"314159 INVITE", b"314159 BYE"), Peer("udp", "127.0.0.1", 5099), 0.0)
    resp = parse_message(out[0].data)  # type: ignore[union-attr]
    assert isinstance(resp, Response) and resp.status == 400
