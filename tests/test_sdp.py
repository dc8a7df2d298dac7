"""SDP parsing/serialisation (RFC 4566) and offer/answer (RFC 3264)."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from softswitch.sip.errors import SipError
from softswitch.sip.sdp import (
    Attribute,
    CodecInfo,
    Connection,
    Direction,
    LocalSession,
    MediaDescription,
    Negotiated,
    Origin,
    RtcpAttr,
    RtpMap,
    SdpError,
    SdpNotAcceptable,
    SessionDescription,
    Timing,
    codecs_of,
    effective_direction,
    make_answer,
    make_offer,
    negotiate_answer,
    next_version,
    parse,
    remote_rtp_address,
)


def crlf(text: str) -> str:
    """Sample bodies are written with LF in the source; real ones use CRLF."""
    return text.lstrip("\n").replace("\n", "\r\n")


BARESIP_OFFER = crlf("""
v=0
o=- 1286338745 3984721529 IN IP4 192.168.1.23
s=-
c=IN IP4 192.168.1.23
t=0 0
a=tool:baresip 3.10.1
m=audio 10278 RTP/AVP 96 9 0 8 101
b=AS:64
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-rsize
a=ssrc:3254089291 cname:59bd5a41-7c4d-4ad9-92f6-3c8c6b5c2a7e
a=label:1
a=sendrecv
a=ptime:20
""")

SIPP_OFFER = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.1.1
s=-
c=IN IP4 127.0.1.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

IPV6_OFFER = crlf("""
v=0
o=alice 2890844526 2890844526 IN IP6 2001:db8::1
s=Talk
c=IN IP6 2001:db8::1
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
m=audio 7078 RTP/AVP 96 97 98 0 8 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp:7079 IN IP6 2001:db8::1
""")

# RFC 4566 §5 example: session-level c= (multicast) and session-level recvonly.
RFC4566_EXAMPLE = crlf("""
v=0
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
s=SDP Seminar
i=A Seminar on the session description protocol
u=http://www.example.com/seminars/sdp.pdf
e=j.doe@example.com (Jane Doe)
c=IN IP4 224.2.17.12/127
t=2873397496 2873404696
a=recvonly
m=audio 49170 RTP/AVP 0
m=video 51372 RTP/AVP 99
a=rtpmap:99 h263-1998/90000
""")

# Video phone: video first, media-level c= and direction, G.729 and ptime 30.
VIDEO_PHONE_OFFER = crlf("""
v=0
o=- 20518 0 IN IP4 203.0.113.5
s=SDP data
b=AS:2048
t=0 0
a=sendrecv
m=video 5004 RTP/AVP 109 34
c=IN IP4 203.0.113.5
b=TIAS:2048000
a=rtpmap:109 H264/90000
a=fmtp:109 profile-level-id=42801f
a=rtpmap:34 H263/90000
m=audio 5002 RTP/AVP 9 0 8 18 97
c=IN IP4 203.0.113.6
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:97 telephone-event/8000
a=fmtp:97 0-15
a=ptime:30
a=maxptime:60
a=sendonly
""")

OLD_HOLD_OFFER = crlf("""
v=0
o=- 1 2 IN IP4 192.0.2.10
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 8000 RTP/AVP 8 0
""")

T38_REOFFER = crlf("""
v=0
o=gw 100 101 IN IP4 198.51.100.7
s=-
c=IN IP4 198.51.100.7
t=0 0
m=audio 0 RTP/AVP 0
m=image 40000 udptl t38
a=T38FaxVersion:0
a=T38MaxBitRate:14400
a=T38FaxRateManagement:transferredTCF
a=T38FaxUdpEC:t38UDPRedundancy
""")

WEBRTC_OFFER = crlf("""
v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:4ZcD
a=fingerprint:sha-256 19:E2:1C:3B:4B:9F:81:E6:B8:5C:F4:A5:A8:D8:73:04:BB:05:2F:70:9F:04:A9:0E:05:E9:26:33:E8:70:88:A2
a=setup:actpass
a=mid:0
a=sendrecv
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:126 telephone-event/8000
""")

SAMPLES = [
    BARESIP_OFFER,
    SIPP_OFFER,
    IPV6_OFFER,
    RFC4566_EXAMPLE,
    VIDEO_PHONE_OFFER,
    OLD_HOLD_OFFER,
    T38_REOFFER,
    WEBRTC_OFFER,
]


def answer(offer: str | SessionDescription, **kw: object) -> tuple[SessionDescription, Negotiated]:
    sdp = parse(offer) if isinstance(offer, str) else offer
    args: dict[str, object] = {"address": "10.0.0.2", "port": 30000, "session_id": 7, "session_version": 7}
    args.update(kw)
    return make_answer(sdp, **args)  # type: ignore[arg-type]


def audio_offer(m_line: str, *attrs: str, session: str = "") -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"]
    lines += session.split() if session else []
    lines += [m_line, *attrs, ""]
    return "\r\n".join(lines)


# --- parsing and serialisation -------------------------------------------------------------------


@pytest.mark.parametrize("text", SAMPLES)
def test_samples_round_trip_byte_for_byte(text: str) -> None:
    sdp = parse(text)
    assert sdp.to_str() == text
    assert str(sdp) == text
    assert parse(sdp.to_bytes()) == sdp
    assert sdp.to_bytes() == text.encode()


def test_baresip_fields() -> None:
    sdp = parse(BARESIP_OFFER.encode())
    assert sdp.origin == Origin("-", 1286338745, 3984721529, "IN", "IP4", "192.168.1.23")
    assert sdp.session_name == "-"
    assert sdp.connection == Connection("192.168.1.23", "IN", "IP4")
    assert sdp.timing == [Timing(0, 0)]
    assert sdp.attribute("tool") == "baresip 3.10.1"
    (m,) = sdp.media
    assert (m.media, m.port, m.port_count, m.proto) == ("audio", 10278, None, "RTP/AVP")
    assert m.formats == [96, 9, 0, 8, 101]
    assert m.bandwidths == [("AS", 64)]
    assert m.rtpmaps[96] == RtpMap(96, "opus", 48000, "2")
    assert m.rtpmaps[96].channels == 2 and m.rtpmaps[0].channels == 1
    assert m.fmtps == {96: "stereo=1;sprop-stereo=1", 101: "0-15"}
    assert m.ptime == 20 and m.maxptime is None
    assert m.direction is Direction.SENDRECV
    assert m.attribute("label") == "1"
    assert m.attribute("rtcp-rsize") == "" and m.attribute("nope") is None
    assert not m.rtcp_mux and m.rtcp is None
    assert codecs_of(m) == [
        (96, "opus", 48000),
        (9, "g722", 8000),
        (0, "pcmu", 8000),
        (8, "pcma", 8000),
        (101, "telephone-event", 8000),
    ]
    assert remote_rtp_address(sdp) == ("192.168.1.23", 10278)


def test_ipv6_and_rtcp_attribute() -> None:
    sdp = parse(IPV6_OFFER)
    assert sdp.origin.addrtype == "IP6"
    assert sdp.connection == Connection("2001:db8::1", "IN", "IP6")
    assert remote_rtp_address(sdp) == ("2001:db8::1", 7078)
    assert sdp.media[0].rtcp == RtcpAttr(7079, "2001:db8::1")


def test_session_level_connection_and_direction() -> None:
    sdp = parse(RFC4566_EXAMPLE)
    assert sdp.info == "A Seminar on the session description protocol"
    assert sdp.uri == "http://www.example.com/seminars/sdp.pdf"
    assert sdp.emails == ["j.doe@example.com (Jane Doe)"]
    assert sdp.timing == [Timing(2873397496, 2873404696)]
    assert sdp.direction is Direction.RECVONLY
    assert [m.direction for m in sdp.media] == [None, None]
    assert effective_direction(sdp, sdp.media[1]) is Direction.RECVONLY
    assert remote_rtp_address(sdp, 0) == ("224.2.17.12", 49170)  # multicast ttl stripped
    assert remote_rtp_address(sdp, 1) == ("224.2.17.12", 51372)
    assert codecs_of(sdp.media[0]) == [(0, "pcmu", 8000)]  # static PT without rtpmap
    assert codecs_of(sdp.media[1]) == [(99, "h263-1998", 90000)]


def test_media_level_connection_and_direction_win() -> None:
    sdp = parse(VIDEO_PHONE_OFFER)
    assert sdp.bandwidths == [("AS", 2048)]
    video, audio = sdp.media
    assert video.bandwidths == [("TIAS", 2048000)]
    assert effective_direction(sdp, video) is Direction.SENDRECV
    assert effective_direction(sdp, audio) is Direction.SENDONLY
    assert remote_rtp_address(sdp, 0) == ("203.0.113.5", 5004)
    assert remote_rtp_address(sdp, 1) == ("203.0.113.6", 5002)
    assert audio.ptime == 30 and audio.maxptime == 60


def test_non_rtp_media_keeps_format_tokens() -> None:
    sdp = parse(T38_REOFFER)
    image = sdp.media[1]
    assert not image.is_rtp and image.formats == [] and image.other_formats == ["t38"]
    assert image.attribute("t38faxversion") == "0"  # attribute lookup ignores case
    assert remote_rtp_address(sdp, 0)[1] == 0  # rejected/disabled stream


def test_codecs_of_static_and_unknown_payload_types() -> None:
    sdp = parse(audio_offer("m=audio 4000 RTP/AVP 0 8 13 3 96", "a=rtpmap:8 pcma/8000"))
    # 96 has no rtpmap: unusable, left out; rtpmap case is lowered.
    assert codecs_of(sdp.media[0]) == [
        (0, "pcmu", 8000),
        (8, "pcma", 8000),
        (13, "cn", 8000),
        (3, "gsm", 8000),
    ]
    assert isinstance(codecs_of(sdp.media[0])[0], CodecInfo)


def test_lf_only_blank_lines_and_missing_optional_lines_are_accepted() -> None:
    sdp = parse("v=0\no=- 1 2 IN IP4 1.2.3.4\n\nc=IN IP4 1.2.3.4\nm=audio 5000  RTP/AVP  0\n")
    assert sdp.session_name == "-" and sdp.timing == [Timing()]
    assert sdp.media[0].formats == [0]
    assert parse(sdp.to_str()) == sdp


def test_repeat_zone_key_phone_lines_kept() -> None:
    text = crlf("""
v=0
o=x 1 1 IN IP4 1.1.1.1
s=s
p=+1 617 555-6011
c=IN IP4 1.1.1.1
t=3034423619 3042462419
r=7d 1h 0 25h
r=604800 3600 0 90000
z=2882844526 -1h 2898848070 0
k=prompt
a=foo
m=audio 1/2 RTP/AVP 0
i=main audio
k=clear:abc
""")
    sdp = parse(text)
    assert sdp.phones == ["+1 617 555-6011"]
    assert sdp.timing[0].repeats == ["7d 1h 0 25h", "604800 3600 0 90000"]
    assert sdp.zone == "2882844526 -1h 2898848070 0" and sdp.key == "prompt"
    assert sdp.media[0].port_count == 2 and sdp.media[0].title == "main audio"
    assert sdp.media[0].key == "clear:abc"
    assert sdp.to_str() == text


def test_non_utf8_bytes_survive() -> None:
    data = SIPP_OFFER.replace("s=-", "s=caf\xe9").encode("latin-1")
    sdp = parse(data)
    assert sdp.to_bytes() == data


def test_attribute_mutation_helpers() -> None:
    m = parse(BARESIP_OFFER).media[0]
    m.direction = Direction.SENDONLY
    assert m.direction is Direction.SENDONLY
    assert m.attribute_values("sendrecv") == [] and m.attributes[-1] == Attribute("sendonly")
    m.direction = None
    assert m.direction is None
    m.set_attribute("ptime", "30")
    assert m.ptime == 30 and m.attribute_values("ptime") == ["30"]
    assert m.remove_attribute("rtpmap") == 5
    assert m.rtpmaps == {}
    assert codecs_of(m) == [(9, "g722", 8000), (0, "pcmu", 8000), (8, "pcma", 8000)]


def test_next_version_copies() -> None:
    sdp = parse(SIPP_OFFER)
    bumped = next_version(sdp)
    assert bumped.origin.session_version == sdp.origin.session_version + 1
    assert sdp.origin.session_version == 2353687637
    bumped.media[0].port = 1
    assert sdp.media[0].port == 6000


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\r\n\r\n",
        "garbage",
        "o=- 1 1 IN IP4 1.1.1.1\r\ns=-\r\n",  # missing v=
        "v=1\r\no=- 1 1 IN IP4 1.1.1.1\r\n",  # unsupported version
        "v=0\r\n",  # missing o=
        "v=0\r\ns=-\r\n",  # o= not second
        "v=0\r\no=- 1 IN IP4 1.1.1.1\r\n",  # o= with 5 fields
        "v=0\r\no=- x 1 IN IP4 1.1.1.1\r\n",  # non-numeric sess-id
        "v=0\r\no=- 1 \u0661 IN IP4 1.1.1.1\r\n",  # non-ASCII digit
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nv=0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nx=1\r\n",  # unknown line type
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nhello\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nc=IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nc=IN IP4 1.1.1.1\r\nc=IN IP4 1.1.1.1\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nb=AS\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nb=AS:x\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nt=0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nr=1 2 3\r\n",  # r= before t=
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\na=\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\na=:x\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio port RTP/AVP 0\r\n",  # bad port
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 70000 RTP/AVP 0\r\n",  # port out of range
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio -1 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000/x RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP PCMU\r\n",  # non-numeric PT
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP 128\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP 0\r\nt=0 0\r\n",  # t= in media
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:200 X/8000\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP 0\r\na=fmtp:x 0-15\r\nm=video 0 RTP/AVP 31\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP 0\r\na=ptime:twenty\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP 0\r\na=rtcp:99999\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP 0\r\nc=IN IP4 1.1.1.1\r\nc=IN IP4 1.1.1.1\r\n",
    ],
)
def test_malformed_raises_typed_400(text: str) -> None:
    with pytest.raises(SdpError) as info:
        parse(text)
    assert info.value.status == 400
    assert isinstance(info.value, SipError)
    assert "\r" not in info.value.reason and "\n" not in info.value.reason


def test_bad_attributes_only_checked_in_rtp_media() -> None:
    # a=ptime at session level or in non-RTP media is kept verbatim, not judged.
    sdp = parse("v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\na=ptime:x\r\nm=image 1 udptl t38\r\na=rtpmap:x\r\n")
    assert sdp.attribute("ptime") == "x" and sdp.media[0].attribute("rtpmap") == "x"


def test_missing_connection_for_stream() -> None:
    sdp = parse("v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\nm=audio 5000 RTP/AVP 0\r\n")
    with pytest.raises(SdpError):
        remote_rtp_address(sdp)
    with pytest.raises(SdpError):
        remote_rtp_address(parse(SIPP_OFFER), 1)


# --- hypothesis: round trip and fuzz --------------------------------------------------------------

TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._+", min_size=1, max_size=12)
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"), max_size=20)
CHECKED = {"rtpmap", "fmtp", "ptime", "maxptime", "rtcp"}
ATTRIBUTE = st.builds(
    Attribute,
    TOKEN.filter(lambda n: n.lower() not in CHECKED),
    st.none() | TEXT,
)
VALID_CHECKED = st.one_of(
    st.builds(
        lambda pt, enc, rate: Attribute("rtpmap", f"{pt} {enc}/{rate}"),
        st.integers(0, 127),
        TOKEN.filter(lambda t: "/" not in t),
        st.integers(1, 96000),
    ),
    st.builds(lambda pt, p: Attribute("fmtp", f"{pt} {p}"), st.integers(0, 127), TOKEN),
    st.builds(lambda n: Attribute("ptime", str(n)), st.integers(1, 200)),
    st.builds(lambda n: Attribute("rtcp", str(n)), st.integers(0, 65535)),
)
CONNECTION = st.builds(Connection, TOKEN, TOKEN, TOKEN)
BANDWIDTH = st.tuples(TOKEN, st.integers(0, 10**9))


@st.composite
def media_descriptions(draw: st.DrawFn) -> MediaDescription:
    proto = draw(st.sampled_from(["RTP/AVP", "RTP/SAVPF", "udptl", "TCP/BFCP"]))
    md = MediaDescription(
        draw(st.sampled_from(["audio", "video", "image", "application"])),
        draw(st.integers(0, 65535)),
        proto,
        port_count=draw(st.none() | st.integers(1, 8)),
        title=draw(st.none() | TEXT),
        connection=draw(st.none() | CONNECTION),
        bandwidths=draw(st.lists(BANDWIDTH, max_size=2)),
        key=draw(st.none() | TEXT),
        attributes=draw(st.lists(ATTRIBUTE | VALID_CHECKED, max_size=6)),
    )
    if md.is_rtp:
        md.formats = draw(st.lists(st.integers(0, 127), max_size=6))
    else:
        md.other_formats = draw(st.lists(TOKEN, max_size=3))
    return md


SESSIONS = st.builds(
    SessionDescription,
    st.builds(Origin, TOKEN, st.integers(0, 2**64), st.integers(0, 2**64), TOKEN, TOKEN, TOKEN),
    session_name=TEXT,
    connection=st.none() | CONNECTION,
    timing=st.lists(
        st.builds(Timing, st.integers(0, 2**40), st.integers(0, 2**40), st.lists(TEXT, max_size=2)),
        min_size=1,
        max_size=2,
    ),
    media=st.lists(media_descriptions(), max_size=4),
    attributes=st.lists(ATTRIBUTE, max_size=4),
    bandwidths=st.lists(BANDWIDTH, max_size=2),
    info=st.none() | TEXT,
    uri=st.none() | TEXT,
    emails=st.lists(TEXT, max_size=2),
    phones=st.lists(TEXT, max_size=2),
    zone=st.none() | TEXT,
    key=st.none() | TEXT,
)


@given(SESSIONS)
def test_generated_descriptions_round_trip(sdp: SessionDescription) -> None:
    text = sdp.to_str()
    assert parse(text) == sdp
    assert parse(sdp.to_bytes()) == sdp
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")


def _check_parse_total(data: bytes | str) -> None:
    try:
        sdp = parse(data)
    except SdpError as exc:
        assert exc.status == 400
        return
    # Whatever parses re-serialises to something that parses to the same thing.
    assert parse(sdp.to_str()) == sdp
    try:
        make_answer(sdp, address="10.0.0.2", port=4000, session_id=1, session_version=1)
    except SdpError as exc:
        assert exc.status in (400, 488)


@given(st.binary(max_size=300))
def test_fuzz_bytes_only_typed_errors(data: bytes) -> None:
    _check_parse_total(data)


@given(st.text(max_size=300))
def test_fuzz_text_only_typed_errors(data: str) -> None:
    _check_parse_total("v=0\r\no=- 1 1 IN IP4 1.1.1.1\r\n" + data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_mutated_samples(sample: str, data: st.DataObject) -> None:
    lines = sample.split("\r\n")
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "dup", "insert", "truncate", "junk"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "truncate":
            lines[i] = lines[i][: data.draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        elif op == "insert":
            pos = data.draw(st.integers(0, len(lines[i])))
            lines[i] = (
                lines[i][:pos] + data.draw(st.text(" 0123456789:/=-abcxyz\t", max_size=4)) + lines[i][pos:]
            )
        else:
            lines.insert(i, data.draw(st.text(max_size=10)))
        if not lines:
            break
    _check_parse_total("\r\n".join(lines))


# --- offer ----------------------------------------------------------------------------------------


def test_make_offer_layout() -> None:
    sdp = make_offer(address="10.0.0.1", port=40000, session_id=42, session_version=43)
    assert sdp.to_str() == crlf("""
v=0
o=softswitch 42 43 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""")
    assert parse(sdp.to_bytes()) == sdp


def test_make_offer_options() -> None:
    sdp = make_offer(
        address="2001:db8::5",
        port=5000,
        codecs=("PCMA",),
        telephone_event_pt=None,
        direction="inactive",
        session_id=1,
        session_version=1,
        username="bob",
    )
    assert sdp.origin.addrtype == "IP6" and sdp.connection == Connection("2001:db8::5", "IN", "IP6")
    assert sdp.origin.username == "bob"
    m = sdp.media[0]
    assert m.formats == [8] and m.direction is Direction.INACTIVE and m.fmtps == {}
    with pytest.raises(ValueError):
        make_offer(address="1.1.1.1", port=1, codecs=("opus",), session_id=1, session_version=1)


# --- answer (we are the answerer) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("formats", "supported", "codec", "pt"),
    [
        ("0 8", ("pcmu", "pcma"), "pcmu", 0),
        ("8 0", ("pcmu", "pcma"), "pcma", 8),  # the offer's order wins over ours (RFC 3264 §6.1)
        ("0 8", ("pcma",), "pcma", 8),
        ("96 9 0 8", ("pcmu", "pcma"), "pcmu", 0),
        ("96 9 0 8", ("pcma", "g722"), "g722", 9),
        ("18 8", ("pcmu", "pcma"), "pcma", 8),
    ],
)
def test_answer_codec_choice(formats: str, supported: tuple[str, ...], codec: str, pt: int) -> None:
    offer = audio_offer(
        f"m=audio 4000 RTP/AVP {formats} 101", "a=rtpmap:96 opus/48000/2", "a=rtpmap:101 telephone-event/8000"
    )
    sdp, neg = answer(offer, supported=supported)
    assert (neg.codec, neg.payload_type) == (codec, pt)
    assert sdp.media[0].formats == [pt, 101]
    assert codecs_of(sdp.media[0])[0].pt == pt


def test_answer_baresip_offer() -> None:
    sdp, neg = answer(BARESIP_OFFER)
    assert neg == Negotiated(
        codec="pcmu",
        payload_type=0,
        telephone_event_pt=101,
        remote=("192.168.1.23", 10278),
        direction=Direction.SENDRECV,
        ptime=20,
        clock_rate=8000,
        media_index=0,
        rtcp=("192.168.1.23", 10279),
    )
    assert sdp.to_str() == crlf("""
v=0
o=softswitch 7 7 IN IP4 10.0.0.2
s=-
c=IN IP4 10.0.0.2
t=0 0
m=audio 30000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
""")


def test_answer_keeps_offerers_payload_type_numbers() -> None:
    offer = audio_offer(
        "m=audio 4000 RTP/AVP 97 96", "a=rtpmap:97 PCMA/8000", "a=rtpmap:96 telephone-event/8000"
    )
    sdp, neg = answer(offer)
    assert (neg.codec, neg.payload_type, neg.telephone_event_pt) == ("pcma", 97, 96)
    assert sdp.media[0].formats == [97, 96]
    assert sdp.media[0].rtpmaps[97] == RtpMap(97, "PCMA", 8000)
    assert sdp.media[0].fmtps == {96: "0-16"}


@pytest.mark.parametrize("te_pt", [96, 97, 100, 101, 127])
def test_answer_dynamic_telephone_event_pt(te_pt: int) -> None:
    offer = audio_offer(
        f"m=audio 4000 RTP/AVP 0 {te_pt}", f"a=rtpmap:{te_pt} telephone-event/8000", f"a=fmtp:{te_pt} 0-15"
    )
    sdp, neg = answer(offer)
    assert neg.telephone_event_pt == te_pt
    assert sdp.media[0].formats == [0, te_pt]


def test_answer_picks_8khz_telephone_event_among_several() -> None:
    _, neg = answer(IPV6_OFFER, address="2001:db8::2")
    assert (neg.codec, neg.payload_type, neg.telephone_event_pt) == ("pcmu", 0, 100)
    assert neg.remote == ("2001:db8::1", 7078) and neg.rtcp == ("2001:db8::1", 7079)


def test_answer_without_telephone_event() -> None:
    sdp, neg = answer(SIPP_OFFER)
    assert neg.telephone_event_pt is None and sdp.media[0].formats == [0]
    sdp, neg = answer(BARESIP_OFFER, telephone_event=False)
    assert neg.telephone_event_pt is None and sdp.media[0].formats == [0]
    assert sdp.media[0].fmtps == {}


def test_answer_ipv6_address() -> None:
    sdp, _ = answer(SIPP_OFFER, address="2001:db8::2")
    assert "c=IN IP6 2001:db8::2\r\n" in sdp.to_str() and sdp.origin.addrtype == "IP6"


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("sendrecv", Direction.SENDRECV),
        ("sendonly", Direction.RECVONLY),
        ("recvonly", Direction.SENDONLY),
        ("inactive", Direction.INACTIVE),
        (None, Direction.SENDRECV),
    ],
)
def test_answer_direction(offered: str | None, answered: Direction) -> None:
    attrs = [f"a={offered}"] if offered else []
    sdp, neg = answer(audio_offer("m=audio 4000 RTP/AVP 0", *attrs))
    assert sdp.media[0].direction is answered and neg.direction is answered


def test_answer_session_level_direction_and_media_override() -> None:
    _, neg = answer(audio_offer("m=audio 4000 RTP/AVP 0", session="a=sendonly"))
    assert neg.direction is Direction.RECVONLY
    _, neg = answer(audio_offer("m=audio 4000 RTP/AVP 0", "a=inactive", session="a=sendonly"))
    assert neg.direction is Direction.INACTIVE


def test_answer_our_direction_is_intersected() -> None:
    _, neg = answer(SIPP_OFFER, direction=Direction.SENDONLY)
    assert neg.direction is Direction.SENDONLY and neg.sending and not neg.receiving
    _, neg = answer(audio_offer("m=audio 4000 RTP/AVP 0", "a=recvonly"), direction="recvonly")
    assert neg.direction is Direction.INACTIVE


def test_answer_old_style_hold() -> None:
    sdp, neg = answer(OLD_HOLD_OFFER)
    assert neg.remote == ("0.0.0.0", 8000)
    assert neg.direction is Direction.RECVONLY and not neg.sending
    assert (neg.codec, neg.payload_type) == ("pcma", 8)
    assert sdp.media[0].direction is Direction.RECVONLY


def test_answer_rejects_video_and_extra_streams() -> None:
    sdp, neg = answer(VIDEO_PHONE_OFFER)
    video, audio = sdp.media
    assert (video.media, video.port, video.proto, video.formats, video.attributes) == (
        "video",
        0,
        "RTP/AVP",
        [109, 34],
        [],
    )
    assert audio.port == 30000 and audio.direction is Direction.RECVONLY
    assert neg.media_index == 1 and neg.remote == ("203.0.113.6", 5002)
    assert (neg.codec, neg.payload_type, neg.telephone_event_pt, neg.ptime) == ("pcmu", 0, 97, 30)
    assert negotiate_answer(parse(VIDEO_PHONE_OFFER), sdp).media_index == 1
    two_audio = audio_offer("m=audio 4000 RTP/AVP 0", "m=audio 4002 RTP/AVP 8")
    sdp, neg = answer(two_audio)
    assert [m.port for m in sdp.media] == [30000, 0] and sdp.media[1].formats == [8]


def test_answer_skips_disabled_and_unusable_audio() -> None:
    offer = audio_offer("m=audio 0 RTP/AVP 0", "m=audio 4002 RTP/AVP 18", "m=audio 4004 RTP/AVP 8")
    sdp, neg = answer(offer)
    assert [m.port for m in sdp.media] == [0, 0, 30000]
    assert neg.media_index == 2 and neg.codec == "pcma"


def test_answer_t38_reoffer_declined() -> None:
    with pytest.raises(SdpNotAcceptable) as info:
        answer(T38_REOFFER)
    assert info.value.status == 488 and info.value.warning == 304


@pytest.mark.parametrize(
    ("offer", "warning"),
    [
        (audio_offer("m=audio 4000 RTP/AVP 18 96", "a=rtpmap:96 opus/48000/2"), 305),
        (audio_offer("m=audio 4000 RTP/AVP 96", "a=rtpmap:96 PCMU/16000"), 305),  # wrong clock rate
        (audio_offer("m=audio 4000 RTP/AVP 96", "a=rtpmap:96 PCMU/8000/2"), 305),  # stereo
        (audio_offer("m=video 4000 RTP/AVP 31"), 304),
        (audio_offer("m=audio 0 RTP/AVP 0"), 304),
        (WEBRTC_OFFER, 302),
    ],
)
def test_answer_not_acceptable(offer: str, warning: int) -> None:
    with pytest.raises(SdpNotAcceptable) as info:
        answer(offer)
    exc = info.value
    assert exc.status == 488 and exc.reason == "Not Acceptable Here" and exc.warning == warning
    assert exc.headers[0][0] == "Warning" and exc.headers[0][1].startswith(f"{warning} softswitch ")


def test_answer_copies_offer_timing() -> None:
    sdp, _ = answer(RFC4566_EXAMPLE)
    assert sdp.timing == [Timing(2873397496, 2873404696)]
    assert [m.port for m in sdp.media] == [30000, 0]
    assert sdp.media[0].direction is Direction.SENDONLY  # session-level recvonly in the offer


# --- negotiate_answer (we are the offerer) --------------------------------------------------------


def our_offer(**kw: object) -> SessionDescription:
    args: dict[str, object] = {"address": "10.0.0.1", "port": 40000, "session_id": 1, "session_version": 1}
    args.update(kw)
    return make_offer(**args)  # type: ignore[arg-type]


def test_negotiate_answer_from_our_make_answer() -> None:
    offer = our_offer(codecs=("pcma", "pcmu"))
    ans, their = answer(parse(offer.to_bytes()))
    ours = negotiate_answer(offer, parse(ans.to_bytes()))
    assert (ours.codec, ours.payload_type, ours.telephone_event_pt) == ("pcma", 8, 101)
    assert ours.remote == ("10.0.0.2", 30000) and their.remote == ("10.0.0.1", 40000)
    assert ours.direction is Direction.SENDRECV


@given(
    st.permutations(["pcmu", "pcma"]),
    st.sampled_from(list(Direction)),
    st.sampled_from(list(Direction)),
    st.sampled_from([96, 101, 110]),
)
def test_offer_answer_agree(
    codecs: list[str], offer_dir: Direction, answer_want: Direction, te_pt: int
) -> None:
    offer = our_offer(codecs=codecs, direction=offer_dir, telephone_event_pt=te_pt)
    ans, their = answer(parse(offer.to_str()), direction=answer_want, supported=("pcma", "pcmu"))
    ours = negotiate_answer(offer, parse(ans.to_str()))
    assert ours.codec == their.codec == codecs[0]
    assert ours.payload_type == their.payload_type
    assert ours.telephone_event_pt == their.telephone_event_pt == te_pt
    assert ours.direction is their.direction.reverse()
    assert ours.direction is offer_dir.intersect(answer_want.reverse())


def test_negotiate_answer_direction_from_answer() -> None:
    offer = our_offer()
    ans = parse(answer(offer)[0].to_str().replace("a=sendrecv", "a=recvonly"))
    assert negotiate_answer(offer, ans).direction is Direction.SENDONLY
    # A non-compliant answer cannot widen what we offered.
    hold = our_offer(direction="sendonly")
    ans = parse(answer(offer)[0].to_str())
    assert negotiate_answer(hold, ans).direction is Direction.SENDONLY


def test_negotiate_answer_old_style_hold_answer() -> None:
    offer = our_offer()
    ans = parse(answer(offer)[0].to_str().replace("c=IN IP4 10.0.0.2", "c=IN IP4 0.0.0.0"))
    neg = negotiate_answer(offer, ans)
    assert not neg.sending and neg.receiving and neg.remote == ("0.0.0.0", 30000)


def test_negotiate_answer_uses_answer_pts_and_optional_telephone_event() -> None:
    offer = our_offer()
    ans = parse(audio_offer("m=audio 5000 RTP/AVP 8", "a=rtcp:6001 IN IP4 192.0.2.9"))
    neg = negotiate_answer(offer, ans)
    assert (neg.codec, neg.payload_type, neg.telephone_event_pt) == ("pcma", 8, None)
    assert neg.rtcp == ("192.0.2.9", 6001)
    ans = parse(audio_offer("m=audio 5000 RTP/AVP 0 96", "a=rtpmap:96 telephone-event/8000"))
    assert negotiate_answer(offer, ans).telephone_event_pt == 96
    # We did not offer telephone-event: an answer listing it does not enable it.
    ans = parse(audio_offer("m=audio 5000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000"))
    assert negotiate_answer(our_offer(telephone_event_pt=None), ans).telephone_event_pt is None


def test_negotiate_answer_errors() -> None:
    offer = our_offer(codecs=("pcmu",))
    with pytest.raises(SdpNotAcceptable):  # a codec we did not offer
        negotiate_answer(offer, parse(audio_offer("m=audio 5000 RTP/AVP 8")))
    with pytest.raises(SdpNotAcceptable) as info:  # our stream rejected
        negotiate_answer(offer, parse(audio_offer("m=audio 0 RTP/AVP 0")))
    assert info.value.status == 488
    with pytest.raises(SdpError) as err:  # m= line count differs
        negotiate_answer(offer, parse(audio_offer("m=audio 5000 RTP/AVP 0", "m=video 0 RTP/AVP 31")))
    assert err.value.status == 400
    with pytest.raises(SdpError) as err:  # media type differs
        negotiate_answer(offer, parse(audio_offer("m=video 5000 RTP/AVP 31")))
    assert err.value.status == 400


# --- LocalSession: versions, hold, resume ---------------------------------------------------------


def session(**kw: object) -> LocalSession:
    args: dict[str, object] = {"address": "10.0.0.1", "port": 40000, "session_id": 5000}
    args.update(kw)
    return LocalSession(**args)  # type: ignore[arg-type]


def test_session_version_bumps_only_on_change() -> None:
    ls = session()
    first = ls.offer()
    assert first.origin.session_id == 5000 and first.origin.session_version == 5000 == ls.version
    assert ls.offer().to_str() == first.to_str()  # same SDP again: same version (RFC 3264 §8)
    held = ls.hold()
    assert held.origin.session_version == 5001 and held.media[0].direction is Direction.SENDONLY
    assert ls.hold().origin.session_version == 5001
    resumed = ls.resume()
    assert resumed.origin.session_version == 5002 and resumed.media[0].direction is Direction.SENDRECV
    assert resumed.origin.session_id == 5000
    ls.port = 40002  # media moved: a change, so a new version
    assert ls.offer().origin.session_version == 5003
    assert session(session_version=0).offer().origin.session_version == 0


def test_session_offer_then_answers() -> None:
    ls = session()
    offer = ls.offer()
    ans, _ = answer(parse(offer.to_str()))
    neg = ls.accept_answer(parse(ans.to_str()))
    assert neg.codec == "pcmu" and ls.negotiated == neg
    held = ls.hold()
    hold_answer, their = answer(parse(held.to_str()))
    assert their.direction is Direction.RECVONLY
    assert ls.accept_answer(hold_answer).direction is Direction.SENDONLY
    assert ls.hold(inactive=True).media[0].direction is Direction.INACTIVE
    with pytest.raises(SdpError):
        session().accept_answer(ans)


def test_session_answering_keeps_layout_codec_and_te_pt() -> None:
    ls = session(session_version=1)
    offer = audio_offer(
        "m=video 5004 RTP/AVP 31", "m=audio 4000 RTP/AVP 8 0 96", "a=rtpmap:96 telephone-event/8000"
    )
    ans, neg = ls.answer(parse(offer))
    assert ans.origin.session_version == 1 and [m.port for m in ans.media] == [0, 40000]
    assert (neg.codec, neg.telephone_event_pt, neg.media_index) == ("pcma", 96, 1)
    held = ls.hold()
    assert held.origin.session_version == 2
    video, audio = held.media
    assert (video.media, video.port, video.formats) == ("video", 0, [31])
    assert audio.formats == [8, 0, 96] and audio.direction is Direction.SENDONLY
    assert audio.fmtps == {96: "0-16"}
    # The peer's answer to our hold re-offer; then the peer holds us in its own re-offer.
    ls.accept_answer(make_answer(held, address="192.0.2.1", port=4000, session_id=1, session_version=2)[0])
    reoffer = parse(offer.replace("a=rtpmap:96", "a=sendonly\r\na=rtpmap:96"))
    ans, neg = ls.answer(reoffer)
    assert neg.direction is Direction.RECVONLY and ans.origin.session_version == 3
    assert ls.hold().media[1].direction is Direction.INACTIVE  # held by the peer: hold = inactive


def test_session_rejects_unknown_codec_name() -> None:
    with pytest.raises(ValueError):
        session(codecs=("pcmu", "amr"))


# --- speed ---------------------------------------------------------------------------------------


def test_parse_and_answer_fast_enough() -> None:
    data = BARESIP_OFFER.encode()
    n = 500
    start = time.perf_counter()
    for _ in range(n):
        make_answer(parse(data), address="10.0.0.2", port=4000, session_id=1, session_version=1)[0].to_bytes()
    per_call = (time.perf_counter() - start) / n
    assert per_call < 1e-3  # ~70 µs measured; 100 calls/s needs far less than 1 ms


def test_session_reoffer_keeps_agreed_dynamic_payload_type() -> None:
    ls = session()
    offer = audio_offer("m=audio 4000 RTP/AVP 97 0", "a=rtpmap:97 PCMA/8000")
    _, neg = ls.answer(parse(offer))
    assert (neg.codec, neg.payload_type, neg.telephone_event_pt) == ("pcma", 97, None)
    audio = ls.hold().media[0]
    assert audio.formats == [97, 0, 101]  # agreed codec first, with its agreed PT
    assert audio.rtpmaps[97] == RtpMap(97, "PCMA", 8000)
