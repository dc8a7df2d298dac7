"""A tiny sans-I/O SIP user agent for tests: builds requests, answers digest challenges."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from softswitch.sip.auth import Algorithm, compute_ha1, digest_response, parse_auth_header
from softswitch.sip.message import Response, parse_message


@dataclass
class Registration:
    """One phone registering ``user`` from ``host:port``."""

    user: str
    password: str
    host: str = "127.0.0.1"
    port: int = 5062
    server: str = "127.0.0.1:5060"
    transport: str = "UDP"
    call_id: str = "reg-call-1@client"
    cseq: int = 0
    _branches: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _nc: int = 0

    def request(
        self,
        *,
        contacts: list[str] | None = None,
        expires: int | None = 3600,
        authorization: str | None = None,
        extra: list[str] | None = None,
        method: str = "REGISTER",
        to_user: str | None = None,
    ) -> bytes:
        self.cseq += 1
        lines = [
            f"{method} sip:{self.server} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {self.host}:{self.port};branch=z9hG4bK{abs(hash(self.call_id)):x}.{next(self._branches)};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{self.server}>;tag=ft{self.user}",
            f"To: <sip:{to_user or self.user}@{self.server}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
        ]
        if contacts is None:
            contacts = [f"<sip:{self.user}@{self.host}:{self.port}>"]
        lines += [f"Contact: {c}" for c in contacts]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines += extra or []
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

    def answer(
        self, challenge: Response, *, password: str | None = None, algorithm: str | None = None
    ) -> str:
        """An Authorization value answering the challenge (first one, or the given algorithm)."""
        values = challenge.headers.get_all("WWW-Authenticate")
        params = {}
        for value in values:
            _, params = parse_auth_header(value)
            if algorithm is None or params.get("algorithm") == algorithm:
                break
        alg = Algorithm(params.get("algorithm", "MD5"))
        realm, nonce = params["realm"], params["nonce"]
        self._nc += 1
        nc, cnonce = f"{self._nc:08x}", "c0ffee"
        uri = f"sip:{self.server}"
        ha1 = compute_ha1(self.user, realm, password or self.password, alg)
        resp = digest_response(ha1, "REGISTER", uri, nonce, alg, qop="auth", nc=nc, cnonce=cnonce)
        return (
            f'Digest username="{self.user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{resp}", algorithm={alg.value}, qop=auth, nc={nc}, cnonce="{cnonce}"'
        )


def response(data: bytes) -> Response:
    msg = parse_message(data)
    assert isinstance(msg, Response), msg
    return msg
