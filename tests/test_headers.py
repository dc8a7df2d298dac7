"""Structured header values: CSeq, Via, name-addr, Contact lists, parameters."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from softswitch.sip.errors import BadRequest
from softswitch.sip.headers import (
    CSeq,
    NameAddr,
    Via,
    parse_contacts,
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_vias,
    quote_string,
    split_list,
    unquote_string,
)
from softswitch.sip.uri import SipUri, TelUri, parse_uri

# --- CSeq -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seq", "method"),
    [
        ("4711 INVITE", 4711, "INVITE"),
        ("  0009\t REGISTER ", 9, "REGISTER"),
        ("0 ACK", 0, "ACK"),
        ("4294967295 NEWMETHOD", 2**32 - 1, "NEWMETHOD"),
        ("1 !interesting-Method0123456789_*+`.%indeed'~", 1, "!interesting-Method0123456789_*+`.%indeed'~"),
    ],
)
def test_parse_cseq(text: str, seq: int, method: str) -> None:
    cseq = parse_cseq(text)
    assert cseq == CSeq(seq, method)
    assert str(cseq) == f"{seq} {method}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "INVITE",
        "1",
        "4294967296 INVITE",
        "-1 INVITE",
        "1.0 INVITE",
        "1 IN VITE",
        "1 INV<ITE",
        "\u0661 INVITE",
        "9" * 5000 + " INVITE",
    ],
)
def test_bad_cseq(text: str) -> None:
    with pytest.raises(BadRequest, match="Bad CSeq"):
        parse_cseq(text)


# --- parameters and lists -------------------------------------------------------------------


def test_parse_params() -> None:
    assert parse_params("") == {}
    assert parse_params("  ") == {}
    assert parse_params(";tag=abc;LR;X=Y") == {"tag": "abc", "lr": None, "x": "Y"}
    assert parse_params(' ; a = 1 ;b; c = "q;u,o\\"te" ') == {"a": "1", "b": None, "c": '"q;u,o\\"te"'}
    assert parse_params(";received=2001:db8::9:255;r2=[2001:db8::1];empty=") == {
        "received": "2001:db8::9:255",
        "r2": "[2001:db8::1]",
        "empty": "",
    }


@pytest.mark.parametrize(
    "text", [";", ";;", ";a;;b", ";a=b c", 'a=";x', ";a=<b>", ";=x", "x", ";a=b=c", ";a,b"]
)
def test_bad_params(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_params(text)


def test_split_list() -> None:
    assert split_list("INVITE, ACK ,BYE") == ["INVITE", "ACK", "BYE"]
    assert split_list("a,,b,") == ["a", "b"]
    assert split_list("a,,b,", keep_empty=True) == ["a", "", "b", ""]
    assert split_list('"Doe, John" <sip:j@x>;q=0.5, <sip:k@y;a=b,c>') == [
        '"Doe, John" <sip:j@x>;q=0.5',
        "<sip:k@y;a=b,c>",
    ]
    assert split_list(r'"a \" , b" <sip:x>, c') == [r'"a \" , b" <sip:x>', "c"]
    assert split_list('"<,>" <sip:x>, "unterminated, x') == ['"<,>" <sip:x>', '"unterminated, x']
    assert split_list("") == []


def test_quote_unquote() -> None:
    assert quote_string('a "b" \\c') == r'"a \"b\" \\c"'
    assert unquote_string(r'"a \"b\" \\c"') == 'a "b" \\c'
    assert unquote_string("token") == "token"
    assert unquote_string('""') == ""


@given(st.text())
def test_quote_round_trip(text: str) -> None:
    assert unquote_string(quote_string(text)) == text


# --- Via --------------------------------------------------------------------------------------


def test_parse_simple_via() -> None:
    (via,) = parse_vias("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds")
    assert via == Via("UDP", "pc33.atlanta.com", None, {"branch": "z9hG4bK776asdhds"})
    assert via.branch == "z9hG4bK776asdhds"
    assert via.received is None and via.rport is None
    assert via.sent_by == "pc33.atlanta.com"
    assert str(via) == "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds"


def test_via_with_lws_everywhere() -> None:
    (via,) = parse_vias(
        "SIP  / 2.0 /\tudp  first.example.com: 4000;ttl=16 ;maddr=224.2.0.1 ;branch = z9hG4bKa7c6a8"
    )
    assert via.protocol == "SIP/2.0"
    assert via.transport == "UDP"
    assert (via.host, via.port) == ("first.example.com", 4000)
    assert via.params == {"ttl": "16", "maddr": "224.2.0.1", "branch": "z9hG4bKa7c6a8"}
    assert str(via) == "SIP/2.0/UDP first.example.com:4000;ttl=16;maddr=224.2.0.1;branch=z9hG4bKa7c6a8"


def test_via_rport() -> None:
    assert parse_vias("SIP/2.0/UDP h;rport;branch=z9hG4bK1")[0].rport == ""
    assert parse_vias("SIP/2.0/UDP h;rport=5062;received=192.0.2.1")[0].rport == "5062"
    assert str(parse_vias("SIP/2.0/UDP h;rport")[0]) == "SIP/2.0/UDP h;rport"
    assert parse_vias("SIP/2.0/UDP h;rport=0005062")[0].rport == "0005062"
    for bad in ("rport=abc", "rport=", "rport=99999", "rport=" + "9" * 5000):
        with pytest.raises(BadRequest):
            parse_vias(f"SIP/2.0/UDP h;{bad}")


def test_multiple_vias_and_ipv6() -> None:
    vias = parse_vias(
        "SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3;received=[2001:db8::9:255],"
        " SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK2;received=2001:db8::9:255 , SIP/2.0/SCTP x.example.com"
    )
    assert [v.transport for v in vias] == ["UDP", "TCP", "SCTP"]
    assert (vias[0].host, vias[0].port) == ("[2001:db8::9:1]", 6050)
    assert vias[0].received == "[2001:db8::9:255]"
    assert vias[1].received == "2001:db8::9:255"
    assert vias[2].params == {}


def test_unknown_transport_kept() -> None:
    (via,) = parse_vias("SIP/2.0/UNKNOWN-TRANSPORT h.example.com;branch=z9hG4bK1")
    assert via.transport == "UNKNOWN-TRANSPORT"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/2.0/UDP/X host",
        "SIP/2.0/UDP host:",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP 2001:db8::1",
        "SIP/2.0/UDP [2001]",
        "SIP/2.0/UDP host;;branch=1",
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/2.0/UDP host;branch=1,",
        "SIP/2.0/UDP host,,SIP/2.0/UDP other",
        "SIP/2.0/UDP host junk",
        'SIP/2.0/UDP host;branch="unterminated',
    ],
)
def test_bad_via(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_vias(text)


# --- name-addr --------------------------------------------------------------------------------


def test_name_addr_forms() -> None:
    a = parse_name_addr('"Alice \\"A\\" Liddell" <sip:alice@atlanta.com;lr>;tag=1928301774')
    assert a.display == 'Alice "A" Liddell'
    assert a.uri == parse_uri("sip:alice@atlanta.com;lr")
    assert a.tag == "1928301774"
    assert str(a) == '"Alice \\"A\\" Liddell" <sip:alice@atlanta.com;lr>;tag=1928301774'

    b = parse_name_addr("Bob  The Builder <sip:bob@biloxi.com>")
    assert b.display == "Bob The Builder"
    assert b.params == {}
    assert str(b) == '"Bob The Builder" <sip:bob@biloxi.com>'

    c = parse_name_addr("<tel:+1234>; tag = x ;Expires=60")
    assert c.display is None
    assert isinstance(c.uri, TelUri)
    assert c.params == {"tag": "x", "expires": "60"}
    assert c.expires == 60

    d = parse_name_addr('"" <sip:x@y>')
    assert d.display == ""
    assert str(d) == '"" <sip:x@y>'


def test_bare_addr_spec_params_belong_to_header() -> None:
    n = parse_name_addr("sip:alice@atlanta.com;tag=88sja8x;unknownparam")
    assert isinstance(n.uri, SipUri)
    assert n.uri.params == {}
    assert n.params == {"tag": "88sja8x", "unknownparam": None}
    assert str(n) == "<sip:alice@atlanta.com>;tag=88sja8x;unknownparam"
    bracketed = parse_name_addr("<sip:alice@atlanta.com;unknownparam>")
    assert isinstance(bracketed.uri, SipUri)
    assert bracketed.uri.params == {"unknownparam": None}
    assert bracketed.params == {}


def test_no_space_before_angle_bracket() -> None:
    n = parse_name_addr("caller<sip:caller@example.com>;tag=323")
    assert n.display == "caller"
    assert n.tag == "323"


def test_name_addr_quoted_display_with_odd_content() -> None:
    n = parse_name_addr('"\u00e9\x00 <not-a-uri>, \\\\" <sip:x@y>')
    assert n.display == "\u00e9\x00 <not-a-uri>, \\"
    assert parse_name_addr(str(n)) == n


def test_tag_setter() -> None:
    n = parse_name_addr("<sip:a@b>")
    n.tag = "abc"
    assert str(n) == "<sip:a@b>;tag=abc"
    n.tag = None
    assert str(n) == "<sip:a@b>"


@pytest.mark.parametrize(
    ("text", "q"), [("", 1.0), (";q=0", 0.0), (";q=0.5", 0.5), (";q=1.000", 1.0), (";q=0.001", 0.001)]
)
def test_q(text: str, q: float) -> None:
    assert parse_name_addr(f"<sip:a@b>{text}").q == q


@pytest.mark.parametrize("value", ["1.5", "2", ".5", "0.1234", "abc", "-0"])
def test_bad_q(value: str) -> None:
    with pytest.raises(BadRequest):
        _ = parse_name_addr(f"<sip:a@b>;q={value}").q


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", ""])
def test_bad_expires(value: str) -> None:
    with pytest.raises(BadRequest):
        _ = parse_name_addr(f"<sip:a@b>;expires={value}").expires


def test_expires_absent_and_large() -> None:
    assert parse_name_addr("<sip:a@b>").expires is None
    assert parse_name_addr("<sip:a@b>;expires=4294967296").expires == 2**32 - 1
    assert parse_name_addr("<sip:a@b>;expires=" + "9" * 5000).expires == 2**32 - 1
    assert parse_name_addr("<sip:a@b>;expires=000").expires == 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        '"Mr. J. User <sip:j.user@example.com>',  # unterminated quoted display name
        "Bell, Alexander <sip:a.g.bell@example.com>",  # non-token characters in display name
        "<sip:a@b",
        "<>",
        "<sip:a@b> junk",
        '"x" sip:a@b',
        '"x" junk <sip:a@b>',
        "Bob sip:a@b",
        "sip:a@b;;x",
        "sip:2001:db8::1",
        "<sip:a@b>;tag=x,y",
    ],
)
def test_bad_name_addr(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_name_addr(text)


def test_parse_contacts() -> None:
    contacts = parse_contacts(
        '"Doe, John" <sip:j@x;transport=tcp>;q=0.5;expires=60, <sip:k@y>;+sip.instance="<urn:uuid:1>" ,'
        " sip:m@z;expires=0"
    )
    assert [str(c.uri) for c in contacts] == ["sip:j@x;transport=tcp", "sip:k@y", "sip:m@z"]
    assert contacts[0].display == "Doe, John"
    assert contacts[0].q == 0.5
    assert contacts[1].params == {"+sip.instance": '"<urn:uuid:1>"'}
    assert contacts[2].expires == 0
    with pytest.raises(BadRequest):
        parse_contacts("<sip:a@b>,,<sip:c@d>")
    with pytest.raises(BadRequest):
        parse_contacts("<sip:a@b>;")


# --- hypothesis round trips -------------------------------------------------------------------

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TOKEN = _ALNUM + "-.!%*_+`'~"
tokens = st.text(_TOKEN, min_size=1, max_size=10)
_label = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9\-]{0,8}[A-Za-z0-9])?", fullmatch=True)
hosts = st.one_of(
    st.lists(_label, min_size=1, max_size=3).map(".".join),
    st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n))),
    st.integers(0, 2**128 - 1).map(lambda n: f"[{ipaddress.IPv6Address(n).compressed}]"),
)
quoted = st.text(st.characters(blacklist_categories=["Cs"]), max_size=10).map(quote_string)
param_values = st.one_of(st.none(), tokens, hosts, quoted)
params = st.dictionaries(tokens.map(str.lower), param_values, max_size=4)


@st.composite
def vias(draw: st.DrawFn) -> Via:
    p = draw(params)
    if "rport" in p:
        p["rport"] = draw(st.none() | st.integers(0, 65535).map(str))
    return Via(
        transport=draw(tokens).upper(),
        host=draw(hosts),
        port=draw(st.none() | st.integers(0, 65535)),
        params=p,
        protocol=draw(st.sampled_from(["SIP/2.0", "SIP/3.0"])),
    )


uris = st.one_of(
    st.builds(
        SipUri,
        scheme=st.sampled_from(["sip", "sips"]),
        user=st.none() | st.text(_ALNUM + "-_.!~*'()&=+$,;?/", min_size=1, max_size=8),
        password=st.none(),
        host=hosts,
        port=st.none() | st.integers(1, 65535),
        params=st.dictionaries(
            st.text(_ALNUM + "-", min_size=1, max_size=5).map(str.lower),
            st.none() | st.text(_ALNUM + "-.!*_+'~", min_size=1, max_size=8),
        ),
        headers=st.just({}),
    ),
    st.builds(TelUri, number=st.from_regex(r"\+[0-9]{1,12}", fullmatch=True), params=st.just({})),
)
displays = st.none() | st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
name_addrs = st.builds(NameAddr, uri=uris, display=displays, params=params)


@given(vias())
def test_via_round_trip(via: Via) -> None:
    assert parse_vias(str(via)) == [via]


@given(st.lists(vias(), min_size=1, max_size=4))
def test_via_list_round_trip(items: list[Via]) -> None:
    assert parse_vias(", ".join(str(v) for v in items)) == items


@given(name_addrs)
def test_name_addr_round_trip(n: NameAddr) -> None:
    parsed = parse_name_addr(str(n))
    assert parsed.uri == n.uri and str(parsed.uri) == str(n.uri)
    assert parsed.display == n.display
    assert parsed.params == n.params


@given(st.lists(name_addrs, min_size=1, max_size=4))
def test_contact_list_round_trip(items: list[NameAddr]) -> None:
    parsed = parse_contacts(", ".join(str(n) for n in items))
    assert [str(p) for p in parsed] == [str(n) for n in items]


# Generated header *strings* (with optional LWS, case and form variations): parse is a fixed point.
_sws = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def param_strings(draw: st.DrawFn) -> str:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        name = draw(tokens.filter(lambda t: t.lower() != "rport"))  # rport must be numeric
        value = draw(st.none() | tokens | quoted | hosts)
        item = f"{draw(_sws)};{draw(_sws)}{name}"
        if value is not None:
            item += f"{draw(_sws)}={draw(_sws)}{value}"
        out.append(item)
    return "".join(out)


@st.composite
def via_strings(draw: st.DrawFn) -> str:
    sws = draw(_sws)
    port = draw(st.none() | st.integers(0, 65535))
    sent_by = draw(hosts) + ("" if port is None else f"{draw(_sws)}:{draw(_sws)}{port}")
    proto = f"{draw(tokens)}{sws}/{sws}{draw(tokens)}{sws}/{sws}{draw(tokens)}"
    return f"{draw(_sws)}{proto} {draw(_sws)}{sent_by}{draw(param_strings())}{draw(_sws)}"


@st.composite
def name_addr_strings(draw: st.DrawFn) -> str:
    uri = str(draw(uris))
    form = draw(st.sampled_from(["bare", "angle", "token", "quoted"]))
    if form == "bare" and not any(c in uri for c in ";?,"):  # §20: such URIs must be in <>
        head = uri
    elif form in ("angle", "bare"):
        head = f"<{uri}>"
    elif form == "token":
        words = draw(st.lists(tokens, min_size=1, max_size=3))
        head = " ".join(words) + draw(_sws) + f"<{uri}>"
    else:
        head = draw(quoted) + draw(_sws) + f"<{uri}>"
    return f"{draw(_sws)}{head}{draw(param_strings())}{draw(_sws)}"


@given(st.lists(via_strings(), min_size=1, max_size=3))
def test_via_string_fixed_point(items: list[str]) -> None:
    first = parse_vias(",".join(items))
    again = parse_vias(", ".join(str(v) for v in first))
    assert again == first
    assert [str(v) for v in again] == [str(v) for v in first]


@given(name_addr_strings())
def test_name_addr_string_fixed_point(text: str) -> None:
    first = parse_name_addr(text)
    again = parse_name_addr(str(first))
    assert str(again) == str(first)
    assert (again.uri, again.display, again.params) == (first.uri, first.display, first.params)


@given(st.text(max_size=60))
def test_parsers_raise_only_bad_request(text: str) -> None:
    for parse in (parse_vias, parse_name_addr, parse_contacts, parse_cseq, parse_params):
        with contextlib.suppress(BadRequest):
            parse(text)
