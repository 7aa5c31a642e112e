from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from modelgate_shared.keys import PrivateKey, generate_private_key, public_jwk, public_key_pem, write_jwks
from modelgate_shared.tokens import FileKeySource, InvalidToken, TokenVerifier, parse_claims

from .conftest import AUDIENCE, ISSUER, claims


def verifier(path: Path, refresh: float = 0.0, **kwargs: object) -> TokenVerifier:
    return TokenVerifier(FileKeySource(path, refresh), issuer=ISSUER, audience=AUDIENCE, **kwargs)  # type: ignore[arg-type]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_valid_rs256_and_es256_tokens(jwks_file: Path, sign: Callable[..., str], ec_key: PrivateKey) -> None:
    v = verifier(jwks_file)
    claims = await v.verify(sign(sub="user-1", scope="predict admin"))
    assert claims.sub == "user-1"
    assert claims.scopes == {"predict", "admin"}
    assert claims.username == "alice"
    assert (await v.verify(sign(key=ec_key))).has_scopes("predict")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"nbf": int(time.time()) + 600}, "invalid claims"),
        ({"iss": "http://evil.test/auth"}, "invalid claims"),
        ({"aud": "other-api"}, "invalid claims"),
        ({"jti": None}, "jti"),
        ({"scope": None}, "scope"),
        ({"sub": None}, "sub"),
    ],
)
async def test_rejects_bad_claims(
    jwks_file: Path, sign: Callable[..., str], overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidToken, match=message):
        await verifier(jwks_file).verify(sign(**overrides))


async def test_leeway_accepts_recently_expired(jwks_file: Path, sign: Callable[..., str]) -> None:
    token = sign(exp=int(time.time()) - 5)
    assert (await verifier(jwks_file, leeway=30).verify(token)).sub
    with pytest.raises(InvalidToken, match="expired"):
        await verifier(jwks_file, leeway=0).verify(token)


async def test_rejects_alg_none(jwks_file: Path, sign: Callable[..., str]) -> None:
    header, payload, _ = sign().split(".")
    none_header = _b64({"alg": "none", "kid": json.loads(base64.urlsafe_b64decode(header + "=="))["kid"]})
    with pytest.raises(InvalidToken, match="not accepted"):
        await verifier(jwks_file).verify(f"{none_header}.{payload}.")


async def test_rejects_hs256_signed_with_the_public_key(jwks_file: Path, rsa_key: PrivateKey) -> None:
    # The classic key-confusion attack: HMAC keyed with the (public) RSA key.
    kid = public_jwk(rsa_key.public_key())["kid"]
    import hashlib
    import hmac

    from .conftest import claims

    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64(claims())}"
    mac = hmac.new(public_key_pem(rsa_key.public_key()), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match="not accepted"):
        await verifier(jwks_file).verify(forged)


async def test_rejects_header_alg_that_does_not_match_the_key(
    jwks_file: Path, rsa_key: PrivateKey, ec_key: PrivateKey
) -> None:
    from jose.jws import sign as jws_sign
    from modelgate_shared.keys import private_key_pem

    from .conftest import claims

    # Signed by the EC key but naming the RSA key's kid.
    rsa_kid = public_jwk(rsa_key.public_key())["kid"]
    token = jws_sign(
        json.dumps(claims()).encode(), private_key_pem(ec_key).decode(), headers={"kid": rsa_kid}, algorithm="ES256"
    )
    with pytest.raises(InvalidToken, match="does not match"):
        await verifier(jwks_file).verify(token)


async def test_rejects_tampered_payload(jwks_file: Path, sign: Callable[..., str]) -> None:
    header, _, signature = sign(scope="predict").split(".")
    from .conftest import claims

    payload = _b64(claims(scope="predict admin"))
    with pytest.raises(InvalidToken, match="signature"):
        await verifier(jwks_file).verify(f"{header}.{payload}.{signature}")


async def test_algorithm_allow_list_is_enforced(jwks_file: Path, sign: Callable[..., str], ec_key: PrivateKey) -> None:
    with pytest.raises(InvalidToken, match="not accepted"):
        await verifier(jwks_file, algorithms=frozenset({"RS256"})).verify(sign(key=ec_key))
    with pytest.raises(ValueError, match="subset"):
        verifier(jwks_file, algorithms=frozenset({"HS256"}))


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "Bearer x.y.z"])
async def test_malformed_tokens(jwks_file: Path, token: str) -> None:
    with pytest.raises(InvalidToken):
        await verifier(jwks_file).verify(token)


async def test_unknown_kid_triggers_one_rate_limited_refresh(tmp_path: Path, sign: Callable[..., str]) -> None:
    old, new = generate_private_key("RS256"), generate_private_key("RS256")
    path = tmp_path / "jwks.json"
    write_jwks(path, {"keys": [public_jwk(old.public_key())]})
    v = verifier(path, refresh=3600)
    await v.keys.load()
    assert (await v.verify(sign(key=old))).sub

    # A rotation adds a key to the file; the verifier refetches on the unknown kid...
    write_jwks(path, {"keys": [public_jwk(old.public_key()), public_jwk(new.public_key())]})
    v_fast = verifier(path, refresh=0)
    await v_fast.keys.load()
    write_jwks(
        path,
        {
            "keys": [
                public_jwk(old.public_key()),
                public_jwk(new.public_key()),
                public_jwk(generate_private_key("ES256").public_key()),
            ]
        },
    )
    assert (await v_fast.verify(sign(key=new))).sub

    # ...but not more often than the interval allows: the slow verifier loaded just
    # now and must not re-read the file for a token it does not know.
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await v.verify(sign(key=new))


async def test_failed_refresh_keeps_cached_keys(tmp_path: Path, sign: Callable[..., str], rsa_key: PrivateKey) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(path, {"keys": [public_jwk(rsa_key.public_key())]})
    v = verifier(path, refresh=0)
    await v.keys.load()
    path.write_text("{broken")
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await v.verify(sign(key=generate_private_key("RS256")))
    assert (await v.verify(sign())).sub  # the cached key still works


WRONG_TYPES: list[object] = [["RS256"], {"alg": "RS256"}, 256, None, True, 1.5]


@pytest.mark.parametrize("field", ["alg", "kid", "crit"])
@pytest.mark.parametrize("value", WRONG_TYPES, ids=repr)
async def test_header_fields_of_the_wrong_type_are_invalid_tokens(
    jwks_file: Path, sign: Callable[..., str], field: str, value: object
) -> None:
    # Signed for real, so only the header's field types are wrong.
    with pytest.raises(InvalidToken):
        await verifier(jwks_file).verify(sign(headers={field: value}))


_NOT_A_STRING: list[object] = [v for v in WRONG_TYPES if v is not None]
_NOT_A_NUMBER: list[object] = [["1"], {"t": 1}, True, "1700000000"]
_WRONG_CLAIMS = [
    *(
        (field, value)
        for field in ("iss", "aud", "sub", "scope", "jti", "preferred_username", "sid")
        for value in _NOT_A_STRING
    ),
    *((f, v) for f in ("iat", "nbf", "exp") for v in _NOT_A_NUMBER),
]


@pytest.mark.parametrize(("field", "value"), _WRONG_CLAIMS, ids=repr)
async def test_claims_of_the_wrong_type_are_invalid_tokens(
    jwks_file: Path, sign: Callable[..., str], field: str, value: object
) -> None:
    with pytest.raises(InvalidToken, match="invalid claims"):
        await verifier(jwks_file).verify(sign(**{field: value}))


async def test_the_session_claim_is_optional_and_exposed(jwks_file: Path, sign: Callable[..., str]) -> None:
    v = verifier(jwks_file)
    assert (await v.verify(sign(sid="family-1"))).session_id == "family-1"
    assert (await v.verify(sign(sid=None))).session_id is None


async def test_audience_list_containing_ours_is_accepted(jwks_file: Path, sign: Callable[..., str]) -> None:
    assert (await verifier(jwks_file).verify(sign(aud=["other-api", AUDIENCE]))).sub


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"x"', b"{bad json", b"\xff\xfe", b'{"exp": NaN}'])
def test_payloads_that_are_not_a_claims_object_are_malformed(payload: bytes) -> None:
    with pytest.raises(InvalidToken, match="malformed"):
        parse_claims(payload, issuer=ISSUER, audience=AUDIENCE, leeway=0, now=time.time())


async def test_oversized_token_is_refused_before_parsing(jwks_file: Path, sign: Callable[..., str]) -> None:
    with pytest.raises(InvalidToken, match="too large"):
        await verifier(jwks_file).verify(sign(padding="x" * 10_000))


@pytest.mark.parametrize("typ", [["JWT"], {"t": "JWT"}, 1, None, True, "JOSE+JSON"], ids=repr)
async def test_a_typ_other_than_jwt_is_refused(jwks_file: Path, sign: Callable[..., str], typ: object) -> None:
    with pytest.raises(InvalidToken, match="type"):
        await verifier(jwks_file).verify(sign(headers={"typ": typ}))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt"])
async def test_jwt_types_are_accepted(jwks_file: Path, sign: Callable[..., str], typ: str) -> None:
    assert (await verifier(jwks_file).verify(sign(headers={"typ": typ}))).sub


@pytest.mark.parametrize("claim", ["preferred_username", "sid"])
def test_null_in_an_optional_claim_is_not_read_as_absent(claim: str) -> None:
    # The signer drops None-valued claims, so the null goes into the payload directly.
    with pytest.raises(InvalidToken, match=claim):
        parse_claims(
            json.dumps({**claims(), claim: None}).encode(), issuer=ISSUER, audience=AUDIENCE, leeway=0, now=time.time()
        )
