"""Torture tests for the message, URI and header parsers.

The messages below are the project's own, written for these tests. They exercise the
pathologies catalogued by RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests):
line folding, LWS in odd places, escapes, unusual characters, overlarge scalars, broken
framing, IPv6 references. The RFCs' own message archives are a held-out evaluation set
and are deliberately not copied here.

Verdicts:
- "valid": parses, and every key header (Call-ID, CSeq, Via, From, To, Request-URI,
  Max-Forwards) parses too.
- "invalid": parse_message or a key-header access raises SipError (400 unless stated).
- "either": the RFC allows rejecting or a liberal reading; only SipError may escape.
- "server": syntactically fine; the error (416, 420, 481, ...) is the server's to detect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from softswitch.sip.errors import BadRequest, SipError
from softswitch.sip.headers import parse_contacts
from softswitch.sip.message import Message, Request, Response, parse_message
from softswitch.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri

CRLF = "\r\n"


def build(*lines: str, body: bytes = b"", content_length: bool = True) -> bytes:
    """Join header lines with CRLF; add Content-Length (unless told not to) and the blank line."""
    head = list(lines)
    if content_length:
        head.append(f"Content-Length: {len(body)}")
    return (CRLF.join(head) + CRLF + CRLF).encode("utf-8") + body


SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\nm=audio 49170 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP6 = (
    b"v=0\r\no=bob 1 1 IN IP6 2001:db8::20\r\ns=-\r\nc=IN IP6 2001:db8::20\r\n"
    b"t=0 0\r\nm=audio 30000 RTP/AVP 0\r\n"
)
VIA = "Via: SIP/2.0/UDP client.example.net:5060;branch=z9hG4bK.torture1"
VIA6 = "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bK.torture6"
FROM = "From: <sip:tester@example.net>;tag=t1"
TO = "To: <sip:target@example.com>"
CID = "Call-ID: torture-{}@client.example.net"
MF = "Max-Forwards: 70"

MULTIPART = (
    b"--boundary42\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    b"--boundary42\r\nContent-Type: application/octet-stream\r\n\r\n"
    b"\x00\x01\x02 bare\rcr \x00 and\rmore\r\r\n"
    b"--boundary42--\r\n"
)


@dataclass(frozen=True)
class Case:
    data: bytes
    verdict: str  # "valid" | "invalid" | "either" | "server"
    status: int = 400  # expected status for "invalid"
    why: str = ""


CASES: dict[str, Case] = {
    # ----- valid but tricky ---------------------------------------------------------------
    "tortuous": Case(
        build(
            "INVITE sip:carol@chicago.example.com;weird-param SIP/2.0",
            "tO  :",
            " sip:carol@chicago.example.com ;  tag   = 0a9b8c",
            'fROM   : "Joe \\"The Boss\\" Smith"',
            "   <sip:joe@example.org>",
            "   ;",
            "  tag = xyz987",
            "mAx-FoRwArDs: 0042",
            "i: folded.call-id.4711@client.example.net",
            "Subject:",
            "X-Odd-Header:  value one",
            "\t value two",
            "X-Strange-Values: ;;,,;;,;",
            "c: application/sdp",
            "Route:",
            " <sip:edge.example.com;lr;unknown=val;flag>",
            "v:  SIP  / 2.0  / TCP     edge.example.com   ;",
            "  branch  =   z9hG4bKfold1  ,",
            " SIP  /    2.0   / UDP  192.0.2.77   ; branch=",
            " z9hG4bKfold2",
            "cseq: 00000321",
            "  INVITE",
            "Via  : SIP /   2.0",
            " /UDP",
            "    192.0.2.8;rport;branch=z9hG4bKfold3",
            "s :",
            'm:"Quoted \\"\\"" <sip:joe@example.org> ; p1 =',
            "      v1 ;",
            "  p2 ; q = 0.25",
            body=SDP,
        ),
        "valid",
    ),
    "wide-characters": Case(
        build(
            "!interesting-Method0123456789_*+`.%indeed'~ "
            "sip:1_odd.User~(ok!yes)&it's+fine$/really?,/;;*:&pass+word=1,odd!*p$a~s_s.(x)@example.com "
            "SIP/2.0",
            "Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~",
            'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_odd.User~(ok!yes)&it\'s+fine$/really?,/;;*@example.com>',
            'From: token1~` token2\'+_ token3*%!.- <sip:mundane@example.com>;fromParam\'\'~+*_!.-%="\u0440\u0430'
            '\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439";tag=_token~1\'+`*%!-.',
            "Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
            "CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~",
            "Max-Forwards: 255",
            "extensionHeader-!.%*+_`'~: \ufeff\u5927\u5ec8\u5730\u9707",
        ),
        "valid",
    ),
    "escapes": Case(
        build(
            "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0",
            "To: sip:%75se%72@example.com",
            "From: <sip:I%20have%20spaces@example.net>;tag=f1",
            "Max-Forwards: 87",
            "i: esc01.239409asdfakjkn23onasd0-3234",
            "CSeq: 234234 INVITE",
            VIA,
            "C: application/sdp",
            "Contact: <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>",
            body=SDP,
        ),
        "valid",
    ),
    "escaped-null": Case(
        build(
            "REGISTER sip:example.com SIP/2.0",
            "To: sip:nul-%00-nul@example.com",
            "From: sip:nul-%00-nul@example.com;tag=839923423",
            "Max-Forwards: 70",
            "Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
            "CSeq: 14398234 REGISTER",
            VIA,
            "Contact: <sip:%00@host5.example.com>",
            "Contact: <sip:%00%00@host5.example.com>",
            "L:0",
            content_length=False,
        ),
        "valid",
    ),
    "percent-not-escape": Case(
        build(
            "OP%54IONS sip:%75ser@example.com SIP/2.0",
            "To: sip:user@example.com",
            "From: <sip:caller@example.net>;tag=938",
            "Max-Forwards: 87",
            "i: pct.28sdf",
            "CSeq: 3923239 OP%54IONS",
            VIA,
            "Contact: <sip:caller@host9.example.net>",
            "Contact: %Z%45 <sip:caller@host8.example.net>",
        ),
        "valid",
    ),
    "no-lws-before-laquot": Case(
        build(
            "OPTIONS sip:user@example.com SIP/2.0",
            "To: sip:user@example.com",
            "From: caller<sip:caller@example.com>;tag=323",
            "Max-Forwards: 70",
            "Call-ID: lwsdisp.1234abcd@funky.example.com",
            "CSeq: 60 OPTIONS",
            "Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw",
        ),
        "valid",
    ),
    "long-values": Case(
        build(
            "INVITE sip:user@example.com SIP/2.0",
            "To: " + '"' + "I have a user name of " + "extreme " * 40 + 'proportion" <sip:user@example.com:6000;'
            + ";".join(f"unknownparam{i}=" + "very" * 20 for i in range(8))
            + ">",
            "From: sip:caller@example.net;tag=" + "12982424" * 40,
            "Call-ID: longreq." + "one" * 200 + "@example.com",
            "CSeq: 3882340 INVITE",
            "Unknown-" + "Long" * 30 + "-Name: unknown-" + "long" * 30 + "-value; unknown-" + "long" * 30
            + "-parameter-name = unknown-" + "long" * 30 + "-parameter-value",
            *[f"Via: SIP/2.0/TCP sip{i}.example.com;branch=z9hG4bK{i:04d}" for i in range(1, 10)],
            "Via: " + ", ".join(f"SIP/2.0/UDP sip{i}.example.com;branch=z9hG4bK{i:04d}" for i in range(10, 35)),
            "Max-Forwards: 70",
            "Contact: <sip:amazinglylongcallername" + "x" * 200 + "@host5.example.net>",
            "Content-Type: application/sdp",
            body=SDP,
        ),
        "valid",
    ),
    "trailing-octets": Case(
        build(
            "REGISTER sip:example.com SIP/2.0",
            "To: sip:j.user@example.com",
            "From: sip:j.user@example.com;tag=43251j3j324",
            "Max-Forwards: 8",
            "I: dblreq.0ha0isndaksdj99sdfafnl3lk233412",
            "Contact: sip:j.user@host.example.com",
            "CSeq: 8 REGISTER",
            "Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKon23x",
            "Content-Length: 0",
            content_length=False,
        )
        + build("INVITE sip:joe@example.com SIP/2.0", "t: sip:joe@example.com", "CSeq: 1 INVITE"),
        "valid",
    ),
    "semicolon-user": Case(
        build(
            "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0",
            "To: sip:j_user@example.com",
            "From: sip:caller@example.org;tag=33242",
            "Max-Forwards: 3",
            VIA,
            "Accept: application/sdp",
            "Call-ID: semiuri.0ha0isndaksdj",
            "CSeq: 8 OPTIONS",
        ),
        "valid",
    ),
    "transports": Case(
        build(
            "OPTIONS sip:user@example.com SIP/2.0",
            "To: sip:user@example.com",
            "From: <sip:caller@example.com>;tag=323",
            "Max-Forwards: 70",
            "Call-ID:  transports.kijh4akdnaqjkwendsasfdj",
            "Accept: application/sdp",
            "CSeq: 60 OPTIONS",
            "Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw",
            "Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf",
            "Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj",
            "Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en",
            "Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee",
        ),
        "valid",
    ),
    "multipart-binary": Case(
        build(
            "MESSAGE sip:kumiko@example.org SIP/2.0",
            "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport",
            "Max-Forwards: 70",
            "Route: <sip:127.0.0.1:5080>",
            "Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=",
            "Contact: <sip:fluffy@127.0.0.1:5070>",
            "To: <sip:kumiko@example.org>",
            "From: <sip:fluffy@example.com>;tag=2fb0dcc9",
            "Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
            "CSeq: 1 MESSAGE",
            'Content-Type: multipart/mixed;boundary="boundary42"',
            body=MULTIPART,
        ),
        "valid",
    ),
    "utf8-reason": Case(
        build(
            "SIP/2.0 200 = 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e"
            "\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c",
            "Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923",
            "Call-ID: unreason.1234ksdfak3j2erwedfsASdf",
            "CSeq: 35 INVITE",
            "From: sip:user@example.com;tag=11141343",
            "To: sip:user@example.edu;tag=2229",
            "Content-Type: application/sdp",
            "Contact: <sip:user@host198.example.com>",
            body=SDP,
        ),
        "valid",
    ),
    "empty-reason": Case(
        build(
            "SIP/2.0 100 ",
            "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe",
            "Call-ID: noreason.asndj203insdf99223ndf",
            "CSeq: 35 INVITE",
            "From: <sip:user@example.com>;tag=39ansfi3",
            "To: <sip:user@example.edu>;tag=902jndnke3",
        ),
        "valid",
    ),
    "leading-crlf": Case(b"\r\n\r\n" + build("OPTIONS sip:x@example.com SIP/2.0", VIA, FROM, TO, CID, "CSeq: 1 OPTIONS"), "valid"),
    "rfc2543-syntax": Case(
        b"INVITE sip:user@example.com SIP/2.0\r\n"
        b"To: sip:j.user@example.com\r\nFrom: sip:caller@example.net\r\nCall-ID: 2543.abc\r\n"
        b"CSeq: 1 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.15\r\nContent-Type: application/sdp\r\n\r\n" + SDP,
        "valid",
        why="no branch, no From tag, no Max-Forwards, no Content-Length: accepted by the parser",
    ),
    # ----- RFC 5118 style IPv6 ----------------------------------------------------------------
    "ipv6-good": Case(
        build("REGISTER sip:[2001:db8::10] SIP/2.0", VIA6, MF, FROM, TO, CID.format(61), "CSeq: 1 REGISTER",
              "Contact: \"Caller\" <sip:caller@[2001:db8::1]>"),
        "valid",
    ),
    "ipv6-port-ambiguous": Case(
        build("REGISTER sip:[2001:db8::10:5070] SIP/2.0", VIA6, MF, FROM, TO, CID.format(62), "CSeq: 1 REGISTER"),
        "valid",
    ),
    "ipv6-port-unambiguous": Case(
        build("REGISTER sip:[2001:db8::10]:5070 SIP/2.0", VIA6, MF, FROM, TO, CID.format(63), "CSeq: 1 REGISTER"),
        "valid",
    ),
    "ipv6-received-with-brackets": Case(
        build("BYE sip:[2001:db8::10] SIP/2.0",
              "Via: SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3-111",
              MF, FROM, "To: <sip:user@[2001:db8::10]>;tag=2", CID.format(64), "CSeq: 2 BYE"),
        "valid",
    ),
    "ipv6-received-no-brackets": Case(
        build("BYE sip:[2001:db8::10] SIP/2.0",
              "Via: SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3",
              MF, FROM, "To: <sip:user@[2001:db8::10]>;tag=2", CID.format(65), "CSeq: 2 BYE"),
        "valid",
    ),
    "ipv6-mixed-vias": Case(
        build("BYE sip:user@host.example.net SIP/2.0",
              "Via: SIP/2.0/UDP [2001:db8::9:ffff]:6050;branch=z9hG4bKas3-111",
              "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144",
              "Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200",
              MF, FROM, "To: <sip:user@example.net>;tag=2", CID.format(66), "CSeq: 2 BYE"),
        "valid",
    ),
    "ipv6-sdp": Case(
        build("INVITE sip:user@[2001:db8::10] SIP/2.0", VIA6, MF, FROM, TO, CID.format(67), "CSeq: 1 INVITE",
              "Contact: <sip:caller@[2001:db8::20]>", "Content-Type: application/sdp", body=SDP6),
        "valid",
    ),
    "ipv4-mapped-ipv6": Case(
        build("INVITE sip:user@example.com SIP/2.0", "Via: SIP/2.0/UDP [::ffff:192.0.2.10]:19823;branch=z9hG4bKbh19",
              MF, FROM, TO, CID.format(68), "CSeq: 1 INVITE", "Contact: <sip:caller@[::ffff:192.0.2.10]:19823>"),
        "valid",
    ),
    "ipv6-three-colons": Case(
        build("OPTIONS sip:user@[2001:db8:::192.0.2.1] SIP/2.0", VIA, MF, FROM, TO, CID.format(69), "CSeq: 1 OPTIONS"),
        "valid",
        why="RFC 5118 §4.10: tolerate the RFC 3261 ABNF bug",
    ),
    "ipv6-two-colons": Case(
        build("OPTIONS sip:user@[2001:db8::192.0.2.1] SIP/2.0", VIA, MF, FROM, TO, CID.format(70), "CSeq: 1 OPTIONS"),
        "valid",
    ),
    "ipv6-no-brackets": Case(
        build("OPTIONS sip:2001:db8::10 SIP/2.0", VIA, MF, FROM, TO, CID.format(71), "CSeq: 1 OPTIONS"),
        "invalid",
    ),
    "ipv6-via-no-brackets": Case(
        build("OPTIONS sip:x@example.com SIP/2.0", "Via: SIP/2.0/UDP 2001:db8::9:1;branch=z9hG4bK1", MF, FROM, TO,
              CID.format(72), "CSeq: 1 OPTIONS"),
        "invalid",
    ),
    # ----- invalid ----------------------------------------------------------------------------
    "stray-separators": Case(
        build("INVITE sip:user@example.com SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.15;;,;,,", MF, FROM, TO,
              CID.format(80), "CSeq: 1 INVITE", "Contact: \"Caller\" <sip:caller@host.example.net>;;"),
        "invalid",
    ),
    "content-length-too-large": Case(
        build("INVITE sip:user@example.com SIP/2.0", VIA, MF, FROM, TO, CID.format(81), "CSeq: 1 INVITE",
              "Content-Length: 9999", content_length=False) + SDP,
        "invalid",
    ),
    "negative-content-length": Case(
        build("INVITE sip:user@example.com SIP/2.0", VIA, MF, FROM, TO, CID.format(82), "CSeq: 1 INVITE",
              "Content-Length: -999", content_length=False) + SDP,
        "invalid",
    ),
    "overlarge-cseq": Case(
        build("REGISTER sip:example.com SIP/2.0", VIA, "Max-Forwards: 70", FROM, TO, CID.format(83),
              "CSeq: 36893488147419103232 REGISTER", "Contact: <sip:u@h>;expires=280297596632815"),
        "invalid",
    ),
    "overlarge-max-forwards": Case(
        build("OPTIONS sip:example.com SIP/2.0", VIA, "Max-Forwards: 300", FROM, TO, CID.format(84), "CSeq: 1 OPTIONS"),
        "invalid",
    ),
    "response-overlarge-cseq": Case(
        build("SIP/2.0 503 Service Unavailable", VIA, FROM, "To: <sip:target@example.com>;tag=x", CID.format(85),
              "CSeq: 4294967296 INVITE", "Retry-After: 18446744073709551616"),
        "invalid",
    ),
    "unterminated-display": Case(
        build("INVITE sip:user@example.com SIP/2.0", VIA, MF, 'To: "Mr. J. User <sip:j.user@example.com>', FROM,
              CID.format(86), "CSeq: 1 INVITE"),
        "invalid",
    ),
    "angle-request-uri": Case(
        build("INVITE <sip:user@example.com> SIP/2.0", VIA, MF, FROM, TO, CID.format(87), "CSeq: 1 INVITE"),
        "invalid",
    ),
    "lws-in-request-uri": Case(
        build("INVITE sip:user@example.com; lr SIP/2.0", VIA, MF, FROM, TO, CID.format(88), "CSeq: 1 INVITE"),
        "invalid",
    ),
    "non-token-display": Case(
        build("OPTIONS sip:user@example.com SIP/2.0", VIA, MF, "To: Watson, Thomas <sip:t.watson@example.org>",
              FROM, CID.format(89), "CSeq: 1 OPTIONS"),
        "invalid",
    ),
    "unknown-version": Case(
        build("OPTIONS sip:t.watson@example.org SIP/7.0", VIA, MF, FROM, TO, CID.format(90), "CSeq: 1 OPTIONS"),
        "invalid",
        status=505,
    ),
    "overlarge-status": Case(
        build("SIP/2.0 4294967301 better not break the receiver", VIA, FROM, TO, CID.format(91), "CSeq: 1 INVITE"),
        "invalid",
    ),
    "missing-headers": Case(
        build("INVITE sip:user@example.com SIP/2.0", "CSeq: 193942 INVITE", VIA, "Content-Type: application/sdp",
              body=SDP),
        "invalid",
    ),
    "missing-via": Case(
        build("OPTIONS sip:user@example.com SIP/2.0", MF, FROM, TO, CID.format(92), "CSeq: 1 OPTIONS"),
        "invalid",
    ),
    "header-without-colon": Case(
        b"INVITE sip:user@example.com\r\nTo sip:user@example.com\r\nCall-ID: x\r\n\r\n",
        "invalid",
    ),
    "bad-via-port": Case(
        build("OPTIONS sip:x@example.com SIP/2.0", "Via: SIP/2.0/UDP host.example.com:70000;branch=z9hG4bK1", MF,
              FROM, TO, CID.format(93), "CSeq: 1 OPTIONS"),
        "invalid",
    ),
    "two-values-in-to": Case(
        build("OPTIONS sip:x@example.com SIP/2.0", VIA, MF, FROM, "To: <sip:a@example.com>, <sip:b@example.com>",
              CID.format(94), "CSeq: 1 OPTIONS"),
        "invalid",
    ),
    # ----- either: the RFC allows a liberal reading -----------------------------------------------
    "multiple-sp-request-line": Case(
        build("OPTIONS  sip:user@example.com   SIP/2.0", VIA, MF, FROM, TO, CID.format(100), "CSeq: 1 OPTIONS"),
        "either",
    ),
    "trailing-sp-request-line": Case(
        build("OPTIONS sip:user@example.com SIP/2.0  ", VIA, MF, FROM, TO, CID.format(101), "CSeq: 1 OPTIONS"),
        "either",
    ),
    "escaped-headers-in-request-uri": Case(
        build("INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0", VIA, MF, FROM, TO, CID.format(102),
              "CSeq: 1 INVITE"),
        "either",
    ),
    "bad-date": Case(
        build("OPTIONS sip:user@example.com SIP/2.0", VIA, MF, FROM, TO, CID.format(103), "CSeq: 1 OPTIONS",
              "Date: Fri, 01 Jan 2010 16:00:00 EST"),
        "either",
    ),
    "contact-headers-without-brackets": Case(
        build("REGISTER sip:example.com SIP/2.0", VIA, MF, FROM, TO, CID.format(104), "CSeq: 1 REGISTER",
              "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E"),
        "either",
    ),
    "spaces-in-addr-spec": Case(
        build("OPTIONS sip:user@example.com SIP/2.0", VIA, MF, FROM, "To: < sip:user@example.com >",
              CID.format(105), "CSeq: 1 OPTIONS"),
        "either",
    ),
    "no-blank-line": Case(
        b"OPTIONS sip:user@example.com SIP/2.0\r\n" + VIA.encode() + b"\r\nMax-Forwards: 70\r\n"
        + FROM.encode() + b"\r\n" + TO.encode() + b"\r\nCall-ID: nbl\r\nCSeq: 1 OPTIONS",
        "either",
    ),
    "multiple-single-value-headers": Case(
        build("INVITE sip:user@example.com SIP/2.0", VIA, MF, "Max-Forwards: 69", FROM,
              "From: <sip:other@example.net>;tag=t2", TO, "To: <sip:other@example.com>", CID.format(106),
              "Call-ID: second-call-id", "CSeq: 1 INVITE", "CSeq: 2 INVITE"),
        "invalid",
        why="RFC 4475 §3.3.8: 400",
    ),
    "multiple-content-length": Case(
        build("OPTIONS sip:user@example.com SIP/2.0", VIA, MF, FROM, TO, CID.format(107), "CSeq: 1 OPTIONS",
              "Content-Length: 5", "Content-Length: 3", content_length=False) + b"hello",
        "invalid",
        why="RFC 4475 §3.3.9: conflicting framing is an error",
    ),
    # ----- server: well formed, the error belongs to a higher layer -------------------------------
    "unknown-request-uri-scheme": Case(
        build("OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0", VIA, MF, FROM, TO, CID.format(110),
              "CSeq: 1 OPTIONS"),
        "server",
        why="416 Unsupported URI Scheme",
    ),
    "atypical-request-uri-scheme": Case(
        build("OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0", VIA, MF, FROM, TO, CID.format(111), "CSeq: 1 OPTIONS"),
        "server",
        why="416 (or 404)",
    ),
    "register-non-sip-schemes": Case(
        build("REGISTER sip:example.com SIP/2.0", VIA, MF, "To: isbn:2983792873", "From: <http://www.example.com>;tag=3",
              CID.format(112), "CSeq: 1 REGISTER", "Contact: <name:John_Smith>"),
        "server",
        why="registrar answers 400: the AOR must be a SIP or SIPS URI",
    ),
    "method-mismatch": Case(
        build("OPTIONS sip:user@example.com SIP/2.0", VIA, MF, FROM, TO, CID.format(113), "CSeq: 1 INVITE"),
        "server",
        why="400: CSeq method differs from the request method",
    ),
    "zero-max-forwards": Case(
        build("OPTIONS sip:user@example.com SIP/2.0", VIA, "Max-Forwards: 0", FROM, TO, CID.format(114),
              "CSeq: 1 OPTIONS"),
        "server",
        why="a UAS processes it normally; a proxy would answer 483",
    ),
    "empty-branch-id": Case(
        build("OPTIONS sip:user@example.com SIP/2.0", "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bK", MF, FROM,
              TO, CID.format(115), "CSeq: 1 OPTIONS"),
        "server",
        why="magic cookie without an id: 400 or RFC 2543 matching",
    ),
    "broadcast-via-response": Case(
        build("SIP/2.0 200 OK", "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23", FROM,
              "To: <sip:target@example.com>;tag=9", CID.format(116), "CSeq: 1 INVITE"),
        "server",
        why="stray response: discard, never send to a broadcast address",
    ),
    "unsupported-require": Case(
        build("OPTIONS sip:user@example.com SIP/2.0", VIA, MF, FROM, TO, CID.format(117), "CSeq: 1 OPTIONS",
              "Require: nothingSupportsThis, nothingSupportsThisEither", "Proxy-Require: noProxiesSupportThis"),
        "server",
        why="420 Bad Extension with Unsupported",
    ),
    "unknown-content-type": Case(
        build("INVITE sip:user@example.com SIP/2.0", VIA, MF, FROM, TO, CID.format(118), "CSeq: 1 INVITE",
              "Content-Type: application/unknownformat", body=b"<audio> <pcmu port=\"443\"/> </audio>\r\n"),
        "server",
        why="415 Unsupported Media Type",
    ),
    "unknown-authorization-scheme": Case(
        build("REGISTER sip:example.com SIP/2.0", VIA, MF, FROM, TO, CID.format(119), "CSeq: 1 REGISTER",
              "Authorization: NoOneKnowsThisScheme opaque-data=here"),
        "server",
        why="401 with a Digest challenge",
    ),
    "unacceptable-accept": Case(
        build("INVITE sip:user@example.com SIP/2.0", VIA, MF, FROM, TO, CID.format(120), "CSeq: 1 INVITE",
              "Accept: text/nobodyKnowsThis", "Content-Type: application/sdp", body=SDP),
        "server",
        why="406 (or 400)",
    ),
}  # fmt: skip


def _names(verdict: str) -> list[str]:
    return [name for name, case in CASES.items() if case.verdict == verdict]


def _touch_key_headers(msg: Message) -> None:
    """Access every parsed view a server relies on (each may raise SipError)."""
    assert msg.call_id
    assert msg.cseq.method
    assert msg.vias
    _ = msg.top_via, msg.from_, msg.to, msg.max_forwards
    if isinstance(msg, Request):
        _ = msg.request_uri


def test_table_is_consistent() -> None:
    verdicts = {case.verdict for case in CASES.values()}
    assert verdicts == {"valid", "invalid", "either", "server"}


@pytest.mark.parametrize("name", _names("valid") + _names("server"))
def test_well_formed_messages_parse(name: str) -> None:
    msg = parse_message(CASES[name].data)
    _touch_key_headers(msg)


@pytest.mark.parametrize("name", _names("invalid"))
def test_invalid_messages_rejected(name: str) -> None:
    case = CASES[name]
    with pytest.raises(SipError) as info:
        _touch_key_headers(parse_message(case.data))
    assert info.value.status == case.status


@pytest.mark.parametrize("name", _names("either"))
def test_liberal_cases_never_crash(name: str) -> None:
    try:
        _touch_key_headers(parse_message(CASES[name].data))
    except SipError as exc:
        assert exc.status == 400


# ----- per-message details ---------------------------------------------------------------------


def req(name: str) -> Request:
    msg = parse_message(CASES[name].data)
    assert isinstance(msg, Request)
    return msg


def test_tortuous_details() -> None:
    msg = req("tortuous")
    assert msg.cseq.seq == 321
    assert msg.cseq.method == "INVITE"
    assert msg.max_forwards == 42
    assert msg.call_id == "folded.call-id.4711@client.example.net"
    assert [(v.transport, v.host, v.branch) for v in msg.vias] == [
        ("TCP", "edge.example.com", "z9hG4bKfold1"),
        ("UDP", "192.0.2.77", "z9hG4bKfold2"),
        ("UDP", "192.0.2.8", "z9hG4bKfold3"),
    ]
    assert msg.vias[2].rport == ""
    assert msg.to.tag == "0a9b8c"
    assert msg.from_.display == 'Joe "The Boss" Smith'
    assert msg.from_.tag == "xyz987"
    assert msg.headers.get("Subject") == ""
    (contact,) = parse_contacts(msg.headers.get("Contact") or "")
    assert contact.display == 'Quoted ""'
    assert contact.params == {"p1": "v1", "p2": None, "q": "0.25"}
    assert contact.q == 0.25
    assert msg.body == SDP


def test_wide_characters_details() -> None:
    msg = req("wide-characters")
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = msg.request_uri
    assert isinstance(uri, SipUri)
    assert uri.user == "1_odd.User~(ok!yes)&it's+fine$/really?,/;;*"
    assert uri.password == "&pass+word=1,odd!*p$a~s_s.(x)"
    assert msg.to.display is not None and "\x00" in msg.to.display
    assert msg.from_.display == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."


def test_escape_details() -> None:
    msg = req("escapes")
    uri = msg.request_uri
    assert isinstance(uri, SipUri)
    assert uri.user == "sips%3Auser%40example.com"
    assert uri.host == "example.net"
    assert msg.to.uri == parse_uri("sip:user@example.com")
    (contact,) = parse_contacts(msg.headers.get("Contact") or "")
    assert isinstance(contact.uri, SipUri)
    # unescaping is never recursive: value%25%34%31 is "value%41", not "valueA"
    assert contact.uri.params["n%61me"] == "v%61lue%25%34%31"
    assert contact.uri == parse_uri("sip:caller@host5.example.net;lr;name=value%2541")
    assert contact.uri != parse_uri("sip:caller@host5.example.net;lr;name=valueA")


def test_escaped_null_details() -> None:
    msg = req("escaped-null")
    uri = msg.to.uri
    assert isinstance(uri, SipUri)
    assert uri.aor() == "sip:nul-\x00-nul@example.com"
    contacts = [c for line in msg.headers.get_all("Contact") for c in parse_contacts(line)]
    assert len(contacts) == 2
    assert contacts[0].uri != contacts[1].uri


def test_percent_not_escape_details() -> None:
    msg = req("percent-not-escape")
    assert msg.method == "OP%54IONS"  # not OPTIONS: methods are never unescaped
    contacts = parse_contacts(", ".join(msg.headers.get_all("Contact")))
    assert [c.display for c in contacts] == [None, "%Z%45"]


def test_long_values_details() -> None:
    msg = req("long-values")
    assert len(msg.vias) == 34
    assert msg.vias[-1].branch == "z9hG4bK0034"
    assert msg.to.display is not None and msg.to.display.startswith("I have a user name of extreme")
    assert isinstance(msg.to.uri, SipUri) and len(msg.to.uri.params) == 8


def test_trailing_octets_are_ignored() -> None:
    msg = req("trailing-octets")
    assert msg.method == "REGISTER"
    assert msg.body == b""


def test_semicolon_user_details() -> None:
    uri = req("semicolon-user").request_uri
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.host, uri.params) == ("user;par=u%40example.net", "example.com", {})


def test_transports_details() -> None:
    assert [v.transport for v in req("transports").vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_multipart_body_kept_byte_exact() -> None:
    assert req("multipart-binary").body == MULTIPART


def test_responses() -> None:
    ok = parse_message(CASES["utf8-reason"].data)
    assert isinstance(ok, Response)
    assert ok.status == 200 and ok.reason.startswith("= 2**3 * 5**2 \u043d\u043e")
    trying = parse_message(CASES["empty-reason"].data)
    assert isinstance(trying, Response)
    assert (trying.status, trying.reason) == (100, "")


@pytest.mark.parametrize(
    ("name", "host", "port"),
    [
        ("ipv6-good", "[2001:db8::10]", None),
        ("ipv6-port-ambiguous", "[2001:db8::10:5070]", None),
        ("ipv6-port-unambiguous", "[2001:db8::10]", 5070),
        ("ipv6-three-colons", "[2001:db8:::192.0.2.1]", None),
        ("ipv6-two-colons", "[2001:db8::192.0.2.1]", None),
    ],
)
def test_ipv6_request_uris(name: str, host: str, port: int | None) -> None:
    uri = req(name).request_uri
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port) == (host, port)


def test_ipv6_vias() -> None:
    assert req("ipv6-received-with-brackets").top_via.received == "[2001:db8::9:255]"
    assert req("ipv6-received-no-brackets").top_via.received == "2001:db8::9:255"
    vias = req("ipv6-mixed-vias").vias
    assert [(v.host, v.port) for v in vias] == [
        ("[2001:db8::9:ffff]", 6050),
        ("192.0.2.1", None),
        ("[2001:db8::9:255]", None),
    ]
    top = req("ipv4-mapped-ipv6").top_via
    assert (top.host, top.port) == ("[::ffff:192.0.2.10]", 19823)


def test_server_level_uri_schemes() -> None:
    assert isinstance(req("unknown-request-uri-scheme").request_uri, AbsoluteUri)
    assert isinstance(req("atypical-request-uri-scheme").request_uri, AbsoluteUri)
    msg = req("register-non-sip-schemes")
    assert isinstance(msg.to.uri, AbsoluteUri)
    assert isinstance(msg.from_.uri, AbsoluteUri)
    assert isinstance(parse_contacts(msg.headers.get("Contact") or "")[0].uri, AbsoluteUri)
    assert req("method-mismatch").cseq.method != "OPTIONS"
    assert req("zero-max-forwards").max_forwards == 0


def test_contact_param_placement() -> None:
    """Bare addr-spec: ;param is a header param. Inside <>: a URI param (RFC 4475 §3.3.12/13)."""
    bare = parse_contacts("sip:user@host.example.com;unknownparam")[0]
    assert isinstance(bare.uri, SipUri)
    assert bare.uri.params == {} and bare.params == {"unknownparam": None}
    inside = parse_contacts("<sip:user@host.example.com;unknownparam>")[0]
    assert isinstance(inside.uri, SipUri)
    assert inside.uri.params == {"unknownparam": None} and inside.params == {}
    escaped = parse_contacts("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>")[0]
    assert str(escaped.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def _mutations(data: bytes) -> list[bytes]:
    return [data[:i] for i in range(0, len(data), 7)] + [data.replace(b"\r\n", b"\n"), data[::-1]]


@pytest.mark.parametrize("name", list(CASES))
def test_truncations_and_mutations_only_raise_sip_errors(name: str) -> None:
    for data in _mutations(CASES[name].data):
        with contextlib.suppress(SipError):
            _touch_key_headers(parse_message(data))


ACCESSORS: list[Callable[[Message], object]] = [
    lambda m: m.call_id,
    lambda m: m.cseq,
    lambda m: m.vias,
    lambda m: m.from_,
    lambda m: m.to,
    lambda m: m.max_forwards,
]


@pytest.mark.parametrize("name", _names("valid"))
def test_reserialised_valid_messages_parse_the_same(name: str) -> None:
    msg = parse_message(CASES[name].data)
    again = parse_message(msg.to_bytes())
    for get in ACCESSORS:
        assert str(get(again)) == str(get(msg))
    if isinstance(msg, Request) and isinstance(again, Request):
        assert str(again.request_uri) == str(msg.request_uri)
        assert isinstance(again.request_uri, SipUri | TelUri | AbsoluteUri)
    assert again.body == msg.body


_HEAD = (
    b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n"
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"Max-Forwards: 000000070", 70),
        (b"Max-Forwards: " + b"0" * 5000 + b"1", 1),
        (b"Max-Forwards: 0", 0),
        (b"Max-Forwards: 255", 255),
        (b"Max-Forwards: \xd9\xa1", None),  # ARABIC-INDIC DIGIT ONE: str.isdigit() but not a SIP DIGIT
        (b"Max-Forwards: 256", None),
        (b"Max-Forwards: " + b"9" * 5000, None),
        (b"Max-Forwards: -1", None),
    ],
)
def test_max_forwards_edge_cases(line: bytes, expected: int | None) -> None:
    msg = parse_message(_HEAD + line + b"\r\n\r\n")
    if expected is None:
        with pytest.raises(BadRequest):
            _ = msg.max_forwards
    else:
        assert msg.max_forwards == expected


@pytest.mark.parametrize("value", ["\u00b2".encode(), b"9" * 5000])
def test_odd_content_length_is_bad_request(value: bytes) -> None:
    with pytest.raises(SipError):
        parse_message(_HEAD + b"Content-Length: " + value + b"\r\n\r\n")


def test_stream_framer_huge_content_length_is_bad_request() -> None:
    from softswitch.sip.message import StreamFramer

    with pytest.raises(SipError):
        StreamFramer().feed(_HEAD + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n")
