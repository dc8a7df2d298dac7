"""Tests for softswitch.sip.auth (HTTP Digest, server side)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softswitch.sip.auth import (
    Algorithm,
    AuthResult,
    Credentials,
    DigestAuthenticator,
    compute_ha1,
    digest_response,
    parse_auth_header,
)
from softswitch.sip.errors import BadRequest

REALM = "example.com"
URI = "sip:example.com"
T0 = 1_700_000_000.0
ACCOUNTS = {
    "alice": Credentials(password="s3cret"),
    "bob": Credentials(ha1_md5=compute_ha1("bob", REALM, "hunter2", Algorithm.MD5)),
}


def make_auth(**kw: object) -> DigestAuthenticator:
    return DigestAuthenticator(REALM, ACCOUNTS.get, b"k" * 32, **kw)  # type: ignore[arg-type]


def nonce_of(challenge: str) -> str:
    scheme, params = parse_auth_header(challenge)
    assert scheme == "Digest"
    return params["nonce"]


def authorization(
    challenge: str,
    user: str,
    password: str,
    *,
    method: str = "REGISTER",
    uri: str = URI,
    qop: bool = True,
    nc: int = 1,
    cnonce: str = "0a4f113b",
    realm: str | None = None,
    send_algorithm: bool = True,
) -> str:
    """What a UAC answers to ``challenge`` (a WWW-Authenticate value)."""
    _, ch = parse_auth_header(challenge)
    alg = Algorithm(ch["algorithm"])
    realm = ch["realm"] if realm is None else realm
    ha1 = compute_ha1(user, realm, password, alg)
    nc_text = f"{nc:08x}"
    parts = [f'username="{user}"', f'realm="{realm}"', f'nonce="{ch["nonce"]}"', f'uri="{uri}"']
    if qop:
        resp = digest_response(ha1, method, uri, ch["nonce"], alg, qop="auth", nc=nc_text, cnonce=cnonce)
        parts += [f'response="{resp}"', "qop=auth", f"nc={nc_text}", f'cnonce="{cnonce}"']
    else:
        resp = digest_response(ha1, method, uri, ch["nonce"], alg)
        parts.append(f'response="{resp}"')
    if send_algorithm:
        parts.append(f"algorithm={alg.value}")
    return "Digest " + ", ".join(parts)


def failed_fields(result: AuthResult) -> tuple[bool, str | None, bool]:
    return result.ok, result.user, result.stale


# -- published vectors ---------------------------------------------------------------------------------------


def test_rfc2617_md5_vector() -> None:
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life", Algorithm.MD5)
    resp = digest_response(
        ha1,
        "GET",
        "/dir/index.html",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        Algorithm.MD5,
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert resp == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        (Algorithm.MD5, "8ca523f5e9506fed4657c9700eebdbec"),
        (Algorithm.SHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(algorithm: Algorithm, expected: str) -> None:
    ha1 = compute_ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    resp = digest_response(
        ha1,
        "GET",
        "/dir/index.html",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        algorithm,
        qop="auth",
        nc="00000001",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert resp == expected


def test_rfc2617_authorization_header_parses() -> None:
    value = (
        'Digest username="Mufasa",\r\n realm="testrealm@host.com",\r\n'
        ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\r\n uri="/dir/index.html",\r\n'
        " qop=auth,\r\n nc=00000001,\r\n"
        ' cnonce="0a4f113b",\r\n response="6629fae49393a05397450978507c4ef1",\r\n'
        ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    scheme, params = parse_auth_header(value)
    assert scheme == "Digest"
    assert params == {
        "username": "Mufasa",
        "realm": "testrealm@host.com",
        "nonce": "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "uri": "/dir/index.html",
        "qop": "auth",
        "nc": "00000001",
        "cnonce": "0a4f113b",
        "response": "6629fae49393a05397450978507c4ef1",
        "opaque": "5ccc069c403ebaf9f0171e9517f40e41",
    }


# -- parsing -------------------------------------------------------------------------------------------------


def test_parse_unquotes_escapes_and_lowercases_names() -> None:
    scheme, params = parse_auth_header(r'digest UserName="a\"b\\c", Realm = "x,y" , ALGORITHM=SHA-256,')
    assert scheme == "digest"
    assert params == {"username": 'a"b\\c', "realm": "x,y", "algorithm": "SHA-256"}


def test_parse_scheme_only() -> None:
    assert parse_auth_header("Digest") == ("Digest", {})
    assert parse_auth_header("  Basic  ") == ("Basic", {})


def test_parse_token68() -> None:
    assert parse_auth_header("Basic YWxpY2U6czNjcmV0==") == ("Basic", {"": "YWxpY2U6czNjcmV0=="})
    assert parse_auth_header("Bearer a.b-c_d~e+f/g ") == ("Bearer", {"": "a.b-c_d~e+f/g"})
    with pytest.raises(BadRequest):
        parse_auth_header("Basic abc def")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Digest ,",
        'Digest username="unterminated',
        'Digest username="a" realm="b"',  # missing comma
        'Digest username="a",,realm="b"',
        'Digest username="a", username="b"',  # duplicate directive
        '"Digest" username="a"',
        'Digestusername="a"',
        'Digest username="a"x',
    ],
)
def test_parse_garbage_raises_bad_request(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_auth_header(value)
    assert info.value.status == 400


# -- challenge -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [(Algorithm.SHA256, Algorithm.MD5), (Algorithm.MD5, Algorithm.SHA256)])
def test_challenge_in_configured_order_with_shared_nonce(order: tuple[Algorithm, Algorithm]) -> None:
    auth = make_auth(algorithms=order)
    values = auth.challenge(T0)
    assert len(values) == 2
    parsed = [parse_auth_header(v) for v in values]
    assert [p["algorithm"] for _, p in parsed] == [a.value for a in order]
    for scheme, p in parsed:
        assert scheme == "Digest"
        assert p["realm"] == REALM
        assert p["qop"] == "auth"
        assert "stale" not in p
    assert parsed[0][1]["nonce"] == parsed[1][1]["nonce"]
    assert 'qop="auth"' in values[0]


def test_challenge_stale_flag_and_single_algorithm() -> None:
    auth = make_auth(algorithms=(Algorithm.MD5,))
    values = auth.challenge(T0, stale=True)
    assert len(values) == 1
    _, p = parse_auth_header(values[0])
    assert p["algorithm"] == "MD5"
    assert p["stale"] == "true"


def test_challenge_nonces_unique_even_at_same_instant() -> None:
    auth = make_auth()
    nonces = {nonce_of(auth.challenge(T0)[0]) for _ in range(1000)}
    assert len(nonces) == 1000


def test_realm_with_quote_is_escaped() -> None:
    auth = DigestAuthenticator('a "b"', lambda u: None, b"k")
    _, p = parse_auth_header(auth.challenge(T0)[0])
    assert p["realm"] == 'a "b"'


def test_constructor_validation() -> None:
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, ACCOUNTS.get, b"k", algorithms=())
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, ACCOUNTS.get, b"")


# -- round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1], ids=["sha256", "md5"])
@pytest.mark.parametrize("qop", [True, False], ids=["qop", "noqop"])
def test_round_trip(index: int, qop: bool) -> None:
    auth = make_auth()
    ch = auth.challenge(T0)[index]
    result = auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret", qop=qop), T0 + 1)
    assert result == AuthResult(True, user="alice")


def test_round_trip_md5_without_algorithm_param() -> None:
    auth = make_auth()
    ch = auth.challenge(T0)[1]
    value = authorization(ch, "alice", "s3cret", send_algorithm=False)
    assert "algorithm" not in value
    assert auth.verify("REGISTER", URI, value, T0).ok


def test_absent_algorithm_means_md5_so_sha256_only_rejects_it() -> None:
    auth = make_auth(algorithms=(Algorithm.SHA256,))
    sha_ch = auth.challenge(T0)[0]
    # Answer the SHA-256 challenge with an MD5 digest and no algorithm param.
    md5_ch = sha_ch.replace("algorithm=SHA-256", "algorithm=MD5")
    value = authorization(md5_ch, "alice", "s3cret", send_algorithm=False)
    result = auth.verify("REGISTER", URI, value, T0)
    assert not result.ok and not result.stale


def test_algorithm_not_offered_rejected() -> None:
    auth = make_auth(algorithms=(Algorithm.MD5,))
    ch = auth.challenge(T0)[0].replace("algorithm=MD5", "algorithm=SHA-256")
    result = auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret"), T0)
    assert not result.ok
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret").replace(
        "algorithm=MD5", "algorithm=MD5-sess"
    )
    assert not auth.verify("REGISTER", URI, value, T0).ok


def test_algorithm_token_case_insensitive() -> None:
    auth = make_auth()
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret").replace(
        "algorithm=SHA-256", "algorithm=sha-256"
    )
    assert auth.verify("REGISTER", URI, value, T0).ok


def test_response_hex_case_insensitive() -> None:
    auth = make_auth()
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret")
    _, p = parse_auth_header(value)
    value = value.replace(p["response"], p["response"].upper())
    assert auth.verify("REGISTER", URI, value, T0).ok


def test_other_method_and_uri() -> None:
    auth = make_auth()
    uri = "sip:bob@example.com;transport=tcp"
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret", method="INVITE", uri=uri)
    assert auth.verify("INVITE", uri, value, T0).ok
    # Same credentials presented for another method: digest no longer matches.
    value2 = authorization(auth.challenge(T0)[0], "alice", "s3cret", method="INVITE", uri=uri)
    assert not auth.verify("BYE", uri, value2, T0).ok


def test_verify_shared_secret_across_instances() -> None:
    issuer, checker = make_auth(), make_auth()
    value = authorization(issuer.challenge(T0)[0], "alice", "s3cret")
    assert checker.verify("REGISTER", URI, value, T0 + 5).ok


def test_non_ascii_user_and_password() -> None:
    accounts = {"jürgen": Credentials(password="pässwörd✓")}
    auth = DigestAuthenticator(REALM, accounts.get, b"k")
    value = authorization(auth.challenge(T0)[0], "jürgen", "pässwörd✓")
    assert auth.verify("REGISTER", URI, value, T0) == AuthResult(True, user="jürgen")


# -- failures ------------------------------------------------------------------------------------------------


def test_wrong_password_and_unknown_user_look_identical() -> None:
    auth = make_auth()
    wrong = auth.verify("REGISTER", URI, authorization(auth.challenge(T0)[0], "alice", "nope"), T0)
    unknown = auth.verify("REGISTER", URI, authorization(auth.challenge(T0)[0], "mallory", "s3cret"), T0)
    assert failed_fields(wrong) == failed_fields(unknown) == (False, None, False)
    assert wrong.reason and unknown.reason


def test_unknown_user_still_hashes_with_dummy_ha1() -> None:
    calls: list[str] = []

    def lookup(user: str) -> Credentials | None:
        calls.append(user)
        return None

    auth = DigestAuthenticator(REALM, lookup, b"k")
    result = auth.verify("REGISTER", URI, authorization(auth.challenge(T0)[0], "ghost", ""), T0)
    assert calls == ["ghost"]
    # Even the "right" digest for an empty password does not match the dummy HA1.
    assert failed_fields(result) == (False, None, False)


def test_stale_nonce_after_ttl() -> None:
    auth = make_auth(nonce_ttl=30.0)
    ch = auth.challenge(T0)[0]
    assert auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret"), T0 + 31) == AuthResult(
        False, stale=True, reason="nonce expired for 'alice'"
    )
    # Within the ttl it is fine.
    assert auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret"), T0 + 29).ok


def test_expired_nonce_with_wrong_password_is_not_stale() -> None:
    auth = make_auth(nonce_ttl=30.0)
    ch = auth.challenge(T0)[0]
    result = auth.verify("REGISTER", URI, authorization(ch, "alice", "wrong"), T0 + 31)
    assert failed_fields(result) == (False, None, False)
    result = auth.verify("REGISTER", URI, authorization(ch, "mallory", "s3cret"), T0 + 31)
    assert failed_fields(result) == (False, None, False)


def test_nonce_from_the_future_is_stale() -> None:
    auth = make_auth()
    ch = auth.challenge(T0 + 100)[0]
    result = auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret"), T0)
    assert (result.ok, result.stale) == (False, True)


def test_forged_nonce() -> None:
    auth = make_auth()
    other = DigestAuthenticator(REALM, ACCOUNTS.get, b"another secret")
    value = authorization(other.challenge(T0)[0], "alice", "s3cret")
    assert failed_fields(auth.verify("REGISTER", URI, value, T0)) == (False, None, False)

    ch = auth.challenge(T0)[0]
    nonce = nonce_of(ch)
    # Move the issue time forward by one hex digit, keeping the MAC: must not verify.
    tampered = ("f" if nonce[10] != "f" else "e").join([nonce[:10], nonce[11:]])
    value = authorization(ch.replace(nonce, tampered), "alice", "s3cret")
    assert failed_fields(auth.verify("REGISTER", URI, value, T0)) == (False, None, False)

    for garbage in ["", "abc", "x" * 56, "é" * 56, nonce[:-1], nonce + "0"]:
        value = authorization(ch.replace(nonce, garbage), "alice", "s3cret")
        assert failed_fields(auth.verify("REGISTER", URI, value, T0)) == (False, None, False), garbage


def test_nc_replay_rejected() -> None:
    auth = make_auth()
    ch = auth.challenge(T0)[0]
    value = authorization(ch, "alice", "s3cret", nc=1)
    assert auth.verify("REGISTER", URI, value, T0).ok
    replay = auth.verify("REGISTER", URI, value, T0 + 1)
    assert not replay.ok
    assert replay.stale  # credentials were right: the client retries with a fresh nonce
    assert replay.user is None


def test_nc_increasing_accepted_and_going_back_rejected() -> None:
    auth = make_auth()
    ch = auth.challenge(T0)[0]
    for nc in (1, 2, 5, 0x10):
        assert auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret", nc=nc), T0 + nc).ok
    for nc in (0x10, 3, 0):
        assert not auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret", nc=nc), T0 + 20).ok
    assert auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret", nc=0x11), T0 + 20).ok


def test_nc_zero_never_accepted() -> None:
    auth = make_auth()
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret", nc=0)
    assert not auth.verify("REGISTER", URI, value, T0).ok


def test_failed_attempt_does_not_burn_nc() -> None:
    auth = make_auth()
    ch = auth.challenge(T0)[0]
    assert not auth.verify("REGISTER", URI, authorization(ch, "alice", "bad", nc=5), T0).ok
    assert auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret", nc=1), T0).ok


def test_no_qop_nonce_accepted_once() -> None:
    auth = make_auth()
    ch = auth.challenge(T0)[0]
    value = authorization(ch, "alice", "s3cret", qop=False)
    assert auth.verify("REGISTER", URI, value, T0).ok
    second = auth.verify("REGISTER", URI, value, T0 + 1)
    assert (second.ok, second.stale) == (False, True)
    # Nor can the spent nonce be reused with qop.
    assert not auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret", nc=1), T0 + 1).ok


def test_qop_then_no_qop_on_same_nonce_rejected() -> None:
    auth = make_auth()
    ch = auth.challenge(T0)[0]
    assert auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret"), T0).ok
    assert not auth.verify("REGISTER", URI, authorization(ch, "alice", "s3cret", qop=False), T0).ok


def test_uri_mismatch() -> None:
    auth = make_auth()
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret", uri="sip:evil.example")
    result = auth.verify("REGISTER", URI, value, T0)
    assert failed_fields(result) == (False, None, False)
    assert "uri" in result.reason


def test_realm_mismatch() -> None:
    auth = make_auth()
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret", realm="other.org")
    result = auth.verify("REGISTER", URI, value, T0)
    assert failed_fields(result) == (False, None, False)
    assert "realm" in result.reason


def test_ha1_md5_only_account() -> None:
    auth = make_auth()
    sha, md5 = auth.challenge(T0)
    result = auth.verify("REGISTER", URI, authorization(sha, "bob", "hunter2"), T0)
    assert failed_fields(result) == (False, None, False)
    assert auth.verify("REGISTER", URI, authorization(md5, "bob", "hunter2"), T0) == AuthResult(
        True, user="bob"
    )
    assert not auth.verify("REGISTER", URI, authorization(md5, "bob", "wrong", nc=2), T0).ok


def test_credentials_ha1() -> None:
    assert Credentials().ha1("a", "r", Algorithm.MD5) is None
    assert Credentials(ha1_md5="ABCDEF").ha1("a", "r", Algorithm.MD5) == "abcdef"
    assert Credentials(ha1_md5="abcdef").ha1("a", "r", Algorithm.SHA256) is None
    assert Credentials(password="p").ha1("a", "r", Algorithm.SHA256) == compute_ha1(
        "a", "r", "p", Algorithm.SHA256
    )


def test_qop_auth_int_rejected() -> None:
    auth = make_auth()
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret").replace("qop=auth", "qop=auth-int")
    assert failed_fields(auth.verify("REGISTER", URI, value, T0)) == (False, None, False)


def test_userhash_rejected() -> None:
    auth = make_auth()
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret") + ", userhash=true"
    assert not auth.verify("REGISTER", URI, value, T0).ok


def test_non_digest_scheme_is_not_ok() -> None:
    auth = make_auth()
    result = auth.verify("REGISTER", URI, "Basic YWxpY2U6czNjcmV0", T0)
    assert failed_fields(result) == (False, None, False)


def test_non_ascii_response_is_just_wrong() -> None:
    auth = make_auth()
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret")
    _, p = parse_auth_header(value)
    value = value.replace(p["response"], "é" * len(p["response"]))
    assert not auth.verify("REGISTER", URI, value, T0).ok


@pytest.mark.parametrize(
    "drop",
    ["username", "realm", "nonce", "uri", "response", "nc", "cnonce"],
)
def test_missing_required_directive_is_bad_request(drop: str) -> None:
    auth = make_auth()
    _, p = parse_auth_header(authorization(auth.challenge(T0)[0], "alice", "s3cret"))
    del p[drop]
    value = "Digest " + ", ".join(f'{k}="{v}"' for k, v in p.items())
    with pytest.raises(BadRequest):
        auth.verify("REGISTER", URI, value, T0)


@pytest.mark.parametrize("nc", ["1", "0000000g", "000000001", "+0000001", " 0000001"])
def test_malformed_nc_is_bad_request(nc: str) -> None:
    auth = make_auth()
    value = authorization(auth.challenge(T0)[0], "alice", "s3cret").replace("nc=00000001", f'nc="{nc}"')
    with pytest.raises(BadRequest):
        auth.verify("REGISTER", URI, value, T0)


@pytest.mark.parametrize(
    "value", ['Digest username="alice" realm="x"', "Digest", "Digest username", "Digest username=", ""]
)
def test_malformed_header_is_bad_request(value: str) -> None:
    auth = make_auth()
    with pytest.raises(BadRequest):
        auth.verify("REGISTER", URI, value, T0)


def test_username_of() -> None:
    auth = make_auth()
    assert DigestAuthenticator.username_of(authorization(auth.challenge(T0)[0], "alice", "x")) == "alice"
    assert auth.username_of("Digest realm=x") is None
    assert auth.username_of("Basic username=alice") is None
    assert auth.username_of("garbage=") is None


# -- bounded replay table ------------------------------------------------------------------------------------


def test_tracking_pruned_by_expiry() -> None:
    auth = make_auth(nonce_ttl=10.0)
    for i in range(50):
        assert auth.verify(
            "REGISTER", URI, authorization(auth.challenge(T0)[0], "alice", "s3cret"), T0 + i / 10
        ).ok
    assert auth.tracked_nonces == 50
    later = T0 + 20
    assert auth.verify("REGISTER", URI, authorization(auth.challenge(later)[0], "alice", "s3cret"), later).ok
    assert auth.tracked_nonces == 1


def test_tracking_capped_and_evicted_nonce_not_replayable() -> None:
    auth = make_auth(max_tracked=100)
    first_ch = auth.challenge(T0)[0]
    first = authorization(first_ch, "alice", "s3cret", nc=1)
    assert auth.verify("REGISTER", URI, first, T0).ok
    unused_ch = auth.challenge(T0)[0]  # issued before the flood, used after its era was evicted
    for i in range(1, 500):
        now = T0 + i / 1000
        assert auth.verify("REGISTER", URI, authorization(auth.challenge(now)[0], "alice", "s3cret"), now).ok
        assert auth.tracked_nonces <= 100
    # The evicted nonce cannot be replayed, not even with a higher nc; the client is told to retry (stale).
    for value in (first, authorization(first_ch, "alice", "s3cret", nc=2)):
        result = auth.verify("REGISTER", URI, value, T0 + 1)
        assert (result.ok, result.stale) == (False, True)
    result = auth.verify("REGISTER", URI, authorization(unused_ch, "alice", "s3cret"), T0 + 1)
    assert (result.ok, result.stale) == (False, True)
    # A fresh challenge works.
    assert auth.verify(
        "REGISTER", URI, authorization(auth.challenge(T0 + 1)[0], "alice", "s3cret"), T0 + 1
    ).ok


# -- fuzz ----------------------------------------------------------------------------------------------------

_AUTH = make_auth()
_VALID = authorization(_AUTH.challenge(T0)[0], "alice", "s3cret")


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_fuzz_verify_arbitrary_text(value: str) -> None:
    try:
        result = _AUTH.verify("REGISTER", URI, value, T0)
    except BadRequest:
        return
    assert not result.ok


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet='Digest usernamrlcoqp="\\,= \t\r\n-0123456789abcdefAUTHMD5SHA', max_size=200))
def test_fuzz_verify_digest_like_text(value: str) -> None:
    try:
        result = _AUTH.verify("REGISTER", URI, "Digest " + value, T0)
    except BadRequest:
        return
    assert not result.ok


@settings(max_examples=400, deadline=None)
@given(st.integers(0, len(_VALID) - 1), st.text(min_size=0, max_size=5), st.integers(0, 5))
def test_fuzz_mutated_valid_header(pos: int, insert: str, cut: int) -> None:
    value = _VALID[:pos] + insert + _VALID[pos + cut :]
    try:
        fresh = make_auth()
        fresh.verify("REGISTER", URI, value, T0)
    except BadRequest:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "username",
                "realm",
                "nonce",
                "uri",
                "response",
                "qop",
                "nc",
                "cnonce",
                "algorithm",
                "opaque",
                "userhash",
            ]
        ),
        st.text(max_size=30),
    )
)
def test_fuzz_structured_params(params: dict[str, str]) -> None:
    body = ", ".join(
        '{}="{}"'.format(k, v.replace("\\", "\\\\").replace('"', '\\"')) for k, v in params.items()
    )
    try:
        result = _AUTH.verify("REGISTER", URI, "Digest " + body, T0)
    except BadRequest:
        return
    assert not result.ok


@given(st.text())
def test_fuzz_parse_only_bad_request(value: str) -> None:
    try:
        scheme, params = parse_auth_header(value)
    except BadRequest:
        return
    assert scheme
    assert all(name == name.lower() for name in params)
