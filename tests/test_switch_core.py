"""The switch's request handling, sans-I/O: bytes in, bytes out, fake clocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.config import Config, load_config
from softswitch.location import LocationStore, read_bindings
from softswitch.sip.ids import counter_ids
from softswitch.sip.message import Response
from softswitch.sip.peer import Peer
from softswitch.switch import SwitchCore

from .sipclient import Registration, response

WALL = 1_800_000_000.0
PHONE = Peer("udp", "127.0.0.1", 5062)


def make_config(tmp_path: Path, extra: str = "") -> Config:
    cfg = tmp_path / "switch.toml"
    cfg.write_text(
        f"""
[switch]
domain = "hotline.example"
listen = ["udp://127.0.0.1:5060"]
data_dir = "var"
[registrar]
min_expires = 60
max_expires = 7200
default_expires = 3600
auth_algorithms = ["MD5", "SHA-256"]
{extra}
[accounts.1001]
password = "pw1001"
[accounts.1002]
ha1 = "{__import__("hashlib").md5(b"1002:hotline.example:pw1002").hexdigest()}"
"""
    )
    return load_config(cfg)


class Harness:
    def __init__(self, config: Config, store: LocationStore) -> None:
        self.core = SwitchCore(
            config, store, ids=counter_ids("t"), secret=b"s" * 32, local_hosts=["127.0.0.1"]
        )
        self.now = 100.0
        self.wall = WALL

    def send(self, data: bytes, peer: Peer = PHONE) -> list[Response]:
        out = self.core.receive(data, peer, self.now, self.wall)
        return [response(t.data) for t in out]

    def one(self, data: bytes, peer: Peer = PHONE) -> Response:
        out = self.send(data, peer)
        assert len(out) == 1, out
        return out[0]

    def register(self, phone: Registration, **kw: object) -> Response:
        challenge = self.one(phone.request(**kw))  # type: ignore[arg-type]
        assert challenge.status == 401, challenge
        return self.one(phone.request(authorization=phone.answer(challenge), **kw))  # type: ignore[arg-type]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    config = make_config(tmp_path)
    return Harness(config, LocationStore(config.data_dir / "location.sqlite"))


def contacts(resp: Response) -> dict[str, int]:
    out = {}
    for value in resp.headers.get_all("Contact"):
        uri, _, params = value.partition(">;")
        expires = dict(p.split("=") for p in params.split(";"))["expires"]
        out[uri.lstrip("<")] = int(expires)
    return out


def test_register_challenge_then_ok_lists_contact(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    challenge = h.one(phone.request())
    assert challenge.status == 401
    assert challenge.to.tag
    algs = [v.split("algorithm=")[1].split(",")[0] for v in challenge.headers.get_all("WWW-Authenticate")]
    assert algs == ["MD5", "SHA-256"]
    ok = h.one(phone.request(authorization=phone.answer(challenge)))
    assert ok.status == 200
    assert contacts(ok) == {"sip:1001@127.0.0.1:5062": 3600}
    assert ok.headers.get("Date")


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_register_with_each_algorithm(h: Harness, algorithm: str) -> None:
    phone = Registration("1001", "pw1001")
    challenge = h.one(phone.request())
    ok = h.one(phone.request(authorization=phone.answer(challenge, algorithm=algorithm)))
    assert ok.status == 200


def test_ha1_account_registers_with_md5(h: Harness) -> None:
    assert h.register(Registration("1002", "pw1002")).status == 200


def test_wrong_password_and_unknown_user_get_the_same_answer(h: Harness) -> None:
    wrong = Registration("1001", "nope", call_id="a")
    c = h.one(wrong.request())
    r1 = h.one(wrong.request(authorization=wrong.answer(c)))
    ghost = Registration("9999", "nope", call_id="b")
    c = h.one(ghost.request())
    r2 = h.one(ghost.request(authorization=ghost.answer(c)))
    assert (r1.status, r1.reason) == (r2.status, r2.reason) == (401, "Unauthorized")
    assert [v.split("nonce=")[0] for v in r1.headers.get_all("WWW-Authenticate")] == [
        v.split("nonce=")[0] for v in r2.headers.get_all("WWW-Authenticate")
    ]
    assert h.core.store.bindings("1001", WALL) == []


def test_stale_nonce_gets_stale_true(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    challenge = h.one(phone.request())
    h.wall += 301
    h.now += 301
    r = h.one(phone.request(authorization=phone.answer(challenge)))
    assert r.status == 401
    assert all("stale=true" in v for v in r.headers.get_all("WWW-Authenticate"))


def test_nc_replay_is_rejected(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    challenge = h.one(phone.request())
    auth = phone.answer(challenge)
    assert h.one(phone.request(authorization=auth)).status == 200
    assert h.one(phone.request(authorization=auth)).status == 401


def test_credentials_for_another_account_are_forbidden(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    challenge = h.one(phone.request(to_user="1002"))
    r = h.one(phone.request(to_user="1002", authorization=phone.answer(challenge)))
    assert r.status == 403
    assert h.core.store.bindings("1002", WALL) == []


def test_several_contacts_q_values_and_expires_param(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    ok = h.register(
        phone,
        contacts=["<sip:1001@127.0.0.1:5062>;q=0.5", "<sip:1001@127.0.0.1:5064>;expires=120;q=0.9"],
        expires=600,
    )
    assert contacts(ok) == {"sip:1001@127.0.0.1:5064": 120, "sip:1001@127.0.0.1:5062": 600}
    assert [b.q for b in h.core.store.bindings("1001", WALL)] == [0.9, 0.5]
    assert "q=0.9" in ok.headers.get_all("Contact")[0]


def test_refresh_and_remove_one_contact(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    h.register(phone, contacts=["<sip:1001@127.0.0.1:5062>", "<sip:1001@127.0.0.1:5064>"])
    h.wall += 100
    ok = h.register(phone, contacts=["<sip:1001@127.0.0.1:5064>;expires=0"], expires=None)
    assert contacts(ok) == {"sip:1001@127.0.0.1:5062": 3500}
    ok = h.register(phone, contacts=["<sip:1001@127.0.0.1:5062>"], expires=1800)
    assert contacts(ok) == {"sip:1001@127.0.0.1:5062": 1800}


def test_query_without_contact_lists_bindings(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    h.register(phone)
    ok = h.register(phone, contacts=[], expires=None)
    assert contacts(ok) == {"sip:1001@127.0.0.1:5062": 3600}


def test_star_removes_all_and_requires_expires_zero(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    h.register(phone, contacts=["<sip:1001@127.0.0.1:5062>", "<sip:1001@127.0.0.1:5064>"])
    bad = h.register(phone, contacts=["*"], expires=3600)
    assert bad.status == 400
    ok = h.register(phone, contacts=["*"], expires=0)
    assert ok.status == 200 and contacts(ok) == {}


def test_interval_too_brief(h: Harness) -> None:
    r = h.register(Registration("1001", "pw1001"), expires=30)
    assert r.status == 423
    assert r.headers.get("Min-Expires") == "60"
    assert h.core.store.bindings("1001", WALL) == []


def test_expires_capped_at_max(h: Harness) -> None:
    ok = h.register(Registration("1001", "pw1001"), expires=99999)
    assert contacts(ok) == {"sip:1001@127.0.0.1:5062": 7200}


def test_call_id_cseq_ordering(h: Harness) -> None:
    phone = Registration("1001", "pw1001", cseq=100)
    h.register(phone)
    phone.cseq = 10  # same Call-ID, older CSeq: must fail and change nothing
    r = h.register(phone, contacts=["<sip:1001@127.0.0.1:5062>;expires=0"], expires=None)
    assert r.status == 500
    assert len(h.core.store.bindings("1001", WALL)) == 1
    other = Registration("1001", "pw1001", call_id="another", cseq=0)  # other Call-ID: accepted
    r = h.register(other, contacts=["<sip:1001@127.0.0.1:5062>;expires=0"], expires=None)
    assert r.status == 200 and contacts(r) == {}


def test_bindings_expire_by_wall_clock(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    h.register(phone, expires=60)
    assert len(h.core.store.bindings("1001", WALL + 59)) == 1
    assert h.core.store.bindings("1001", WALL + 61) == []


def test_bindings_persist_across_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    store = LocationStore(config.data_dir / "location.sqlite")
    h = Harness(config, store)
    h.register(Registration("1001", "pw1001"), expires=600)
    store.close()
    listed = read_bindings(config.data_dir / "location.sqlite", WALL + 100)
    assert [(b.aor, b.remaining(WALL + 100)) for b in listed] == [("1001", 500)]
    again = LocationStore(config.data_dir / "location.sqlite")
    assert again.load(WALL + 100) == 1
    assert again.bindings("1001", WALL + 100)[0].remaining(WALL + 100) == 500
    assert again.load(WALL + 700) == 0  # expired while down


def test_options_answers_with_allow_and_accept(h: Harness) -> None:
    r = h.one(Registration("1001", "x").request(method="OPTIONS", contacts=[], expires=None))
    assert r.status == 200
    assert "REGISTER" in (r.headers.get("Allow") or "")
    assert r.headers.get("Accept") == "application/sdp"


def test_unknown_method_501_and_known_unsupported_405(h: Harness) -> None:
    r = h.one(Registration("1001", "x").request(method="FOOBAR", contacts=[], expires=None))
    assert r.status == 501 and r.headers.get("Allow")
    r = h.one(Registration("1001", "x", call_id="m").request(method="MESSAGE", contacts=[], expires=None))
    assert r.status == 405 and r.headers.get("Allow")


def test_max_forwards_zero_gets_483(h: Harness) -> None:
    data = Registration("1001", "x").request(method="MESSAGE", contacts=[], expires=None)
    r = h.one(data.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"))
    assert r.status == 483


def test_unsupported_require_gets_420(h: Harness) -> None:
    r = h.one(Registration("1001", "x").request(extra=["Require: foo, 100rel"]))
    assert r.status == 420
    assert r.headers.get("Unsupported") == "foo, 100rel"


def test_malformed_request_gets_400_with_reason(h: Harness) -> None:
    data = Registration("1001", "x").request().replace(b"CSeq: 1 REGISTER", b"CSeq: one REGISTER")
    r = h.one(data)
    assert r.status == 400 and "CSeq" in r.reason


def test_garbage_is_dropped_without_error(h: Harness) -> None:
    assert h.send(b"\x00\xff garbage \r\n\r\n") == []
    assert h.send(b"") == []
    assert h.send(b"\r\n\r\n") == []


def test_response_goes_to_rport_and_received(h: Harness) -> None:
    phone = Registration("1001", "pw1001", host="10.0.0.7", port=5062)  # behind NAT
    out = h.core.receive(phone.request(), Peer("udp", "127.0.0.9", 40000), h.now, h.wall)
    assert out[0].peer == Peer("udp", "127.0.0.9", 40000)
    via = response(out[0].data).headers.get("Via") or ""
    assert "received=127.0.0.9" in via and "rport=40000" in via


def test_retransmitted_register_is_absorbed(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    data = phone.request()
    first = h.one(data)
    again = h.one(data)  # same branch: the transaction resends its last response
    assert again.status == first.status == 401
    assert again.headers.get("WWW-Authenticate") == first.headers.get("WWW-Authenticate")


def test_foreign_domain_is_not_found(h: Harness) -> None:
    data = (
        Registration("1001", "pw1001")
        .request()
        .replace(b"REGISTER sip:127.0.0.1:5060", b"REGISTER sip:evil.example")
    )
    assert h.one(data).status == 404


def test_credentials_for_our_realm_are_picked_among_several(h: Harness) -> None:
    phone = Registration("1001", "pw1001")
    challenge = h.one(phone.request())
    other = 'Digest username="1001", realm="elsewhere", nonce="x", uri="sip:a", response="00"'
    ours = phone.answer(challenge)
    data = phone.request(extra=[f"Authorization: {other}", f"Authorization: {ours}"])
    assert h.one(data).status == 200
