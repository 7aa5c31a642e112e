"""Identity for rate limiting: every request's token is verified, none is remembered."""

from __future__ import annotations

from pathlib import Path

from gateway_service.identity import ANONYMOUS, IdentityResolver
from modelgate_shared.keys import VerificationKey, load_verification_keys
from modelgate_shared.testing import TokenSigner
from modelgate_shared.tokens import TokenVerifier

from .conftest import AUDIENCE, ISSUER


class RevocableKeys:
    """A key source whose keys can be withdrawn (a rotated-out or compromised signing key)."""

    def __init__(self, keys: dict[str, VerificationKey]) -> None:
        self.keys = dict(keys)

    async def get(self, kid: str) -> VerificationKey | None:
        return self.keys.get(kid)

    async def load(self) -> None:
        return None

    @property
    def ready(self) -> bool:
        return bool(self.keys)


def _resolver(public_keys: Path) -> tuple[IdentityResolver, RevocableKeys]:
    keys = RevocableKeys(load_verification_keys(public_keys))
    return IdentityResolver(TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)), keys


async def test_a_valid_token_names_its_subject_and_scopes(signer: TokenSigner, public_keys: Path) -> None:
    resolver, _ = _resolver(public_keys)
    identity = await resolver.resolve(f"Bearer {signer.token(sub='u-1', scope='predict admin')}".encode())
    assert identity.sub == "u-1"
    assert identity.scopes == frozenset({"predict", "admin"})


async def test_missing_malformed_or_forged_tokens_are_anonymous(signer: TokenSigner, public_keys: Path) -> None:
    resolver, _ = _resolver(public_keys)
    token = signer.token(sub="u-1")
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    for authorization in (None, b"", b"Basic dTpw", b"Bearer ", b"Bearer not.a.token", f"Bearer {forged}".encode()):
        assert await resolver.resolve(authorization) == ANONYMOUS, authorization


async def test_each_request_is_verified_again_so_a_withdrawn_key_stops_counting_at_once(
    signer: TokenSigner, public_keys: Path
) -> None:
    resolver, keys = _resolver(public_keys)
    authorization = f"Bearer {signer.token(sub='u-1')}".encode()
    assert (await resolver.resolve(authorization)).sub == "u-1"
    keys.keys.clear()
    # The same token, seconds later: no remembered identity outlives the signature check.
    assert await resolver.resolve(authorization) == ANONYMOUS
