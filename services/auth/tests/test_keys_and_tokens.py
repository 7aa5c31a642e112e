from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from auth_service.issuing import (
    AccessTokenRequest,
    hash_secret,
    issue_access_token,
    new_secret,
)
from auth_service.keyring import KeyRing, KeyRingSource, create_key, key_files
from jose import jwt
from modelgate_shared.keys import KeyMaterialError, PrivateKey, generate_private_key
from modelgate_shared.tokens import InvalidToken, TokenVerifier

from .conftest import AUDIENCE, ISSUER, write_key


@pytest.fixture(scope="module")
def ec_key() -> PrivateKey:
    return generate_private_key("ES256")


def request_for(subject: uuid.UUID, ttl: int = 900) -> AccessTokenRequest:
    return AccessTokenRequest(ISSUER, AUDIENCE, subject, "alice", ("predict", "models:read"), ttl)


def verifier_for(ring: KeyRing) -> TokenVerifier:
    return TokenVerifier(KeyRingSource(ring), issuer=ISSUER, audience=AUDIENCE)


async def test_issued_token_carries_every_contract_claim(keys_dir: Path) -> None:
    ring = KeyRing(keys_dir)
    ring.load()
    subject = uuid.uuid4()
    now = datetime.now(UTC)
    token = issue_access_token(ring.signing, request_for(subject), now)
    claims = jwt.get_unverified_claims(token)
    assert set(claims) == {"iss", "aud", "sub", "preferred_username", "scope", "iat", "nbf", "exp", "jti"}
    assert claims["sub"] == str(subject)
    assert claims["scope"] == "predict models:read"
    assert claims["exp"] - claims["iat"] == 900
    verified = await verifier_for(ring).verify(token)
    assert verified.sub == str(subject)
    other = issue_access_token(ring.signing, request_for(subject), now)
    assert jwt.get_unverified_claims(other)["jti"] != claims["jti"]


async def test_expired_token_is_refused(keys_dir: Path) -> None:
    ring = KeyRing(keys_dir)
    ring.load()
    token = issue_access_token(ring.signing, request_for(uuid.uuid4(), ttl=60), datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(InvalidToken, match="expired"):
        await verifier_for(ring).verify(token)


async def test_es256_keys_sign_verifiable_tokens(tmp_path: Path, ec_key: PrivateKey) -> None:
    write_key(tmp_path, "a.pem", ec_key)
    ring = KeyRing(tmp_path)
    ring.load()
    assert ring.signing.algorithm == "ES256"
    token = issue_access_token(ring.signing, request_for(uuid.uuid4()), datetime.now(UTC))
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    await verifier_for(ring).verify(token)


def test_newest_file_signs_unless_a_kid_is_pinned(tmp_path: Path, rsa_key: PrivateKey, ec_key: PrivateKey) -> None:
    write_key(tmp_path, "20260101T000000000000Z-old.pem", rsa_key)
    write_key(tmp_path, "20260201T000000000000Z-new.pem", ec_key)
    ring = KeyRing(tmp_path)
    ring.load()
    assert ring.signing.algorithm == "ES256"
    assert len(ring.jwks()["keys"]) == 2
    old_kid = next(k.kid for k in ring.keys if k.algorithm == "RS256")
    pinned = KeyRing(tmp_path, signing_kid=old_kid)
    pinned.load()
    assert pinned.signing.kid == old_kid
    with pytest.raises(KeyMaterialError, match="SIGNING_KID"):
        KeyRing(tmp_path, signing_kid="nope").load()


def test_refresh_picks_up_a_new_key_and_survives_a_bad_one(tmp_path: Path, rsa_key: PrivateKey) -> None:
    write_key(tmp_path, "20260101T000000000000Z-old.pem", rsa_key)
    ring = KeyRing(tmp_path)
    ring.load()
    old = ring.signing.kid
    assert ring.refresh() is False
    create_key(tmp_path, "ES256")
    assert ring.refresh() is True
    assert ring.signing.kid != old
    assert len(ring.keys) == 2
    (tmp_path / "zzz-broken.pem").write_text("not a key")
    assert ring.refresh() is False
    assert len(ring.keys) == 2


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="no private keys"):
        KeyRing(tmp_path / "missing").load()


def test_created_keys_are_owner_only(tmp_path: Path) -> None:
    path = create_key(tmp_path / "keys", "ES256")
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "keys").stat().st_mode & 0o777 == 0o700
    assert key_files(tmp_path / "keys") == [path]


def test_secrets_are_256_bit_and_hashed() -> None:
    tokens = {new_secret() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert len(token) >= 43
    assert hash_secret(token) == hash_secret(token)
    assert hash_secret(token) != hash_secret(token + "x")
    assert len(hash_secret(token)) == 64
