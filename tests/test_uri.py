"""URI parsing, serialisation and RFC 3261 §19.1.4 comparison."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.sip.errors import BadRequest
from softswitch.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri


def sip(text: str) -> SipUri:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    return uri


# --- parsing -------------------------------------------------------------------------------


def test_parse_full_sip_uri() -> None:
    uri = sip("SIPS:alice:secret@Example.COM:5061;Transport=TLS;lr;maddr=239.255.255.1?Subject=hi&X=")
    assert uri.scheme == "sips"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "Example.COM"
    assert uri.port == 5061
    assert uri.params == {"transport": "TLS", "lr": None, "maddr": "239.255.255.1"}
    assert uri.transport == "tls"
    assert uri.headers == {"Subject": "hi", "X": ""}
    assert uri.host_port == "Example.COM:5061"


def test_minimal_uri_defaults() -> None:
    uri = sip("sip:example.com")
    assert (uri.user, uri.password, uri.port, uri.params, uri.headers) == (None, None, None, {}, {})
    assert uri.transport is None
    assert uri.host_port == "example.com"
    assert str(uri) == "sip:example.com"


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sip:alice:@atlanta.com",
        "sips:bob@biloxi.com:5061;transport=tcp;lr",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sip:alice;day=tuesday@atlanta.com",
        "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
        "sip:%61lice@example.com;x=%20",
        "sip:null-%00-null@example.com",
        "sip:[2001:db8::10]",
        "sip:[2001:db8::10]:5070;transport=udp",
        "sip:user@192.0.2.1:0",
        "sip:example.com.",
        "sip:alice@host_with_underscore.example.com",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
        "@example.com",
    ],
)
def test_canonical_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_user_keeps_escapes_and_semicolons() -> None:
    uri = sip("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u%40example.net"
    assert uri.host == "example.com"
    assert uri.params == {}


def test_escaped_null_is_not_truncated() -> None:
    uri = sip("sip:null-%00-null@example.com")
    assert uri.aor() == "sip:null-\x00-null@example.com"


def test_ipv6_port_ambiguity() -> None:
    # RFC 5118 §4.3/§4.4: the port belongs outside the brackets
    inside = sip("sip:user@[2001:db8::10:5070]")
    assert (inside.host, inside.port) == ("[2001:db8::10:5070]", None)
    outside = sip("sip:user@[2001:db8::10]:5070")
    assert (outside.host, outside.port) == ("[2001:db8::10]", 5070)


def test_ipv6_three_colon_abnf_bug_tolerated() -> None:
    # RFC 5118 §4.10
    assert sip("sip:user@[2001:db8:::192.0.2.1]").host == "[2001:db8:::192.0.2.1]"
    assert sip("sip:user@[2001:db8::192.0.2.1]").host == "[2001:db8::192.0.2.1]"
    assert sip("sip:user@[::ffff:192.0.2.10]").port is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "sips:",
        "sip:alice@",
        "sip:@example.com",
        "sip:2001:db8::10",  # RFC 5118 §4.2: IPv6 without brackets
        "sip:user@[2001:db8::10",
        "sip:user@[1:2]",
        "sip:user@[2001:db8:::1]",
        "sip:user@[gggg::1]",
        "sip:user@example.com:",
        "sip:user@example.com:65536",
        "sip:user@example.com:123456",
        "sip:user@example.com:50a",
        "sip:user name@example.com",
        "sip:user@example.com ;lr",
        " sip:user@example.com",
        "sip:user@exa mple.com",
        "<sip:user@example.com>",
        "sip:user@example.com;;lr",
        "sip:user@example.com;=x",
        "sip:user@example.com?",
        "sip:user@-example.com",
        "sip:%4@example.com",
        "sip:user@example.com;x=%zz",
        "sip:us\u00e9r@example.com",
        "sip:user@exa\tmple.com",
        "tel:",
        "tel:+1 234",
        "tel:+1234;;x",
        "nocolon",
        "1http:x",
        "http:",
        "mailto:a b@c",
    ],
)
def test_bad_uris_rejected(text: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_uri(text)
    assert info.value.status == 400
    assert info.value.reason.startswith("Bad URI")


def test_tel_uri() -> None:
    uri = parse_uri("TEL:+1-201-555-0123;Phone-Context=example.com;isub=12")
    assert isinstance(uri, TelUri)
    assert uri.number == "+1-201-555-0123"
    assert uri.params == {"phone-context": "example.com", "isub": "12"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com;isub=12"
    assert uri == parse_uri("tel:+12015550123;isub=12;phone-context=EXAMPLE.com")
    assert uri != parse_uri("tel:+12015550124;isub=12;phone-context=example.com")
    assert hash(uri) == hash(parse_uri("tel:+1.201.555.0123;isub=12;phone-context=example.com"))


@pytest.mark.parametrize(
    "text", ["mailto:alice@example.com", "http://example.com/x?y=1", "urn:uuid:f81d4fae", "soap.beep://x"]
)
def test_absolute_uri(text: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, AbsoluteUri)
    assert str(uri) == text
    assert uri == AbsoluteUri(text)
    assert uri.scheme == text.partition(":")[0]


def test_sip_prefixed_other_scheme_is_absolute() -> None:
    assert isinstance(parse_uri("sipx:whatever"), AbsoluteUri)


def test_aor() -> None:
    assert sip("sip:Alice@Example.COM:5070;transport=tcp?x=y").aor() == "sip:Alice@example.com"
    assert sip("sip:%41lice@example.com").aor() == sip("sip:Alice@EXAMPLE.com").aor()
    # escaped reserved characters stay distinct from the literal ones
    assert sip("sip:a%3bb@x").aor() == "sip:a%3Bb@x"
    assert sip("sip:a%3bb@x").aor() != sip("sip:a;b@x").aor()
    assert sip("sips:example.com:5061").aor() == "sips:example.com"
    assert sip("sip:u@[2001:DB8:0::1]").aor() == "sip:u@[2001:db8::1]"


# --- RFC 3261 §19.1.4 --------------------------------------------------------------------

RFC_EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]

RFC_NOT_EQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),  # usernames
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),  # explicit vs default port
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),  # transport
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),  # header
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),  # no DNS resolution
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),  # non-transitive
]


@pytest.mark.parametrize(("a", "b"), RFC_EQUAL)
def test_rfc3261_equal(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua == ub
    assert ub == ua
    assert hash(ua) == hash(ub)


@pytest.mark.parametrize(("a", "b"), RFC_NOT_EQUAL)
def test_rfc3261_not_equal(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua != ub
    assert ub != ua


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("sip:alice@x", "sips:alice@x", False),  # scheme
        ("sip:alice:pw@x", "sip:alice:PW@x", False),  # password is case-sensitive
        ("sip:alice:pw@x", "sip:alice@x", False),
        ("sip:x", "sip:alice@x", False),
        ("sip:a%3Bb@x", "sip:a;b@x", False),  # escaped reserved char is not the char
        ("sip:a%3bb@x", "sip:a%3Bb@x", True),
        ("sip:alice@x;maddr=1.2.3.4", "sip:alice@x", False),
        ("sip:alice@x;user=phone", "sip:alice@x", False),
        ("sip:alice@x;ttl=1", "sip:alice@x;ttl=1", True),
        ("sip:alice@x;method=INVITE", "sip:alice@x;method=invite", True),
        ("sip:alice@x;lr", "sip:alice@x;lr=on", False),
        ("sip:alice@x;lr", "sip:alice@x", True),
        ("sip:alice@x?A=1", "sip:alice@x?a=1", True),  # header names are case-insensitive
        ("sip:alice@x?a=1", "sip:alice@x?a=1&b=2", False),
        ("sip:alice@[2001:db8::1]", "sip:alice@[2001:DB8:0:0::1]", True),
        ("sip:alice@x:5060", "sip:alice@x:5061", False),
    ],
)
def test_more_equivalence_rules(a: str, b: str, equal: bool) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert (ua == ub) is equal
    assert (ub == ua) is equal
    if equal:
        assert hash(ua) == hash(ub)


def test_sip_uri_not_equal_to_other_types() -> None:
    assert parse_uri("sip:a@b") != "sip:a@b"
    assert parse_uri("sip:a@b") != parse_uri("tel:+123")
    assert {parse_uri("sip:%61@B"): 1}[parse_uri("sip:a@b")] == 1


# --- hypothesis round trips ------------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_UNRESERVED = _ALNUM + "-_.!~*'()"
_escape = st.integers(0, 255).map(lambda n: f"%{n:02X}")


def _chars(alphabet: str, min_size: int = 1) -> st.SearchStrategy[str]:
    piece = st.one_of(st.sampled_from(alphabet), _escape)
    return st.lists(piece, min_size=min_size, max_size=12).map("".join)


_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9\-]{0,8}[A-Za-z0-9])?", fullmatch=True)
hostnames = st.lists(_label, min_size=1, max_size=4).map(".".join)
ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: f"[{ipaddress.IPv6Address(n).compressed}]")
hosts = st.one_of(hostnames, ipv4, ipv6)
param_names = st.text(_UNRESERVED + "[]/:&+$", min_size=1, max_size=8).map(str.lower)
param_values = st.one_of(st.none(), _chars(_UNRESERVED + "[]/:&+$", min_size=0))
header_names = _chars(_UNRESERVED + "[]/?:+$")
header_values = _chars(_UNRESERVED + "[]/?:+$", min_size=0)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    user = draw(st.none() | _chars(_UNRESERVED + "&=+$,;?/"))
    password = None if user is None else draw(st.none() | _chars(_UNRESERVED + "&=+$,", min_size=0))
    names = draw(st.lists(header_names, max_size=3, unique_by=str.lower))
    return SipUri(
        scheme=draw(st.sampled_from(["sip", "sips"])),
        user=user,
        password=password,
        host=draw(hosts),
        port=draw(st.none() | st.integers(0, 65535)),
        params=draw(st.dictionaries(param_names, param_values, max_size=4)),
        headers={name: draw(header_values) for name in names},
    )


def _fields(uri: SipUri) -> tuple[object, ...]:
    return (uri.scheme, uri.user, uri.password, uri.host, uri.port, uri.params, uri.headers)


@given(sip_uris())
def test_sip_uri_round_trip(uri: SipUri) -> None:
    parsed = sip(str(uri))
    assert _fields(parsed) == _fields(uri)
    assert parsed == uri
    assert hash(parsed) == hash(uri)
    assert str(parsed) == str(uri)


@given(sip_uris())
def test_uri_equal_to_itself_with_case_changes(uri: SipUri) -> None:
    other = sip(str(uri))
    other.host = other.host.upper()
    other.scheme = uri.scheme
    assert other == uri
    assert other.aor() == uri.aor()


@given(st.from_regex(r"\+?[0-9A-F*#\-.()]{1,15}", fullmatch=True), st.dictionaries(param_names, param_values))
def test_tel_uri_round_trip(number: str, params: dict[str, str | None]) -> None:
    uri = TelUri(number, params)
    parsed = parse_uri(str(uri))
    assert isinstance(parsed, TelUri)
    assert (parsed.number, parsed.params) == (number, params)


@given(st.text(max_size=40))
def test_parse_uri_never_crashes(text: str) -> None:
    try:
        uri = parse_uri(text)
    except BadRequest:
        return
    assert str(parse_uri(str(uri))) == str(uri)
