from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from modelgate_shared.keys import (
    KeyMaterialError,
    PrivateKey,
    generate_private_key,
    load_private_key_pem,
    load_verification_keys,
    parse_jwks,
    public_jwk,
    public_key_pem,
    thumbprint,
    write_private_key,
)


def test_thumbprint_matches_rfc7638_example() -> None:
    # The worked example of RFC 7638 section 3.1.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiF"
            "V4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnY"
            "b9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0"
            "Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_public_jwk_kid_is_thumbprint_and_round_trips(alg: str) -> None:
    key = generate_private_key(alg)
    jwk = public_jwk(key.public_key())
    assert jwk["alg"] == alg and jwk["use"] == "sig"
    assert jwk["kid"] == thumbprint(jwk)
    assert "d" not in jwk  # never a private member
    keys = parse_jwks({"keys": [jwk]})
    assert list(keys) == [jwk["kid"]]
    assert keys[jwk["kid"]].algorithm == alg


def test_private_key_written_owner_only(tmp_path: Path, rsa_key: PrivateKey) -> None:
    path = tmp_path / "k" / "signing.pem"
    write_private_key(path, rsa_key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_private_key_pem(path.read_bytes())
    assert public_jwk(loaded.public_key()) == public_jwk(rsa_key.public_key())


def test_rejects_jwks_whose_kid_lies() -> None:
    jwk = public_jwk(generate_private_key("ES256").public_key())
    with pytest.raises(KeyMaterialError, match="does not match its thumbprint"):
        parse_jwks({"keys": [{**jwk, "kid": "forged"}]})


def test_rejects_hmac_and_wrong_alg_in_jwks(rsa_key: PrivateKey) -> None:
    jwk = public_jwk(rsa_key.public_key())
    with pytest.raises(KeyMaterialError, match="not allowed"):
        parse_jwks({"keys": [{**jwk, "alg": "HS256"}]})
    with pytest.raises(KeyMaterialError):
        parse_jwks({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})


def test_rejects_small_rsa_key() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - the point of the test
    with pytest.raises(KeyMaterialError, match="at least 2048"):
        public_jwk(small.public_key())


def test_load_verification_keys_from_folder_of_pem_and_jwks(tmp_path: Path, rsa_key: PrivateKey) -> None:
    other = generate_private_key("ES256")
    (tmp_path / "a.pem").write_bytes(public_key_pem(rsa_key.public_key()))
    (tmp_path / "b.json").write_text(json.dumps({"keys": [public_jwk(other.public_key())]}))
    (tmp_path / "notes.txt").write_text("ignored")
    keys = load_verification_keys(tmp_path)
    assert set(keys) == {public_jwk(rsa_key.public_key())["kid"], public_jwk(other.public_key())["kid"]}


def test_load_verification_keys_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="no such file"):
        load_verification_keys(tmp_path / "missing.json")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(KeyMaterialError, match=r"bad\.pem"):
        load_verification_keys(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(KeyMaterialError, match="no public keys"):
        load_verification_keys(tmp_path / "empty")
