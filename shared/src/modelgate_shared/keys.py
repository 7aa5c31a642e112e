"""Public-key handling shared by the token issuer and the verifiers.

Keys are identified by their RFC 7638 JWK thumbprint, so a ``kid`` is derived from
the key itself and never has to be configured or kept in sync by hand.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk as jose_jwk
from jose.backends.base import Key

# The only signature algorithms modelgate issues or accepts. Never "none", never HMAC:
# with an HMAC algorithm a public key would double as a shared secret.
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset({"RS256", "ES256"})


def allowed_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    """``algorithms`` as an allow-list, or ``ValueError`` unless a non-empty subset of the supported ones."""
    chosen = frozenset(algorithms)
    if not chosen or not chosen <= SUPPORTED_ALGORITHMS:
        raise ValueError(
            f"algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)}, got {sorted(chosen)}"
        )
    return chosen


PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class KeyMaterialError(ValueError):
    """A key file or JWKS document that cannot be used."""


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_fixed(value: int, length: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode("ascii")


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK (base64url, no padding)."""
    kty = jwk.get("kty")
    if kty == "RSA":
        members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    elif kty == "EC":
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    else:
        raise KeyMaterialError(f"unsupported key type {kty!r}")
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def algorithm_for(key: PublicKey | PrivateKey) -> str:
    """The one algorithm a key may be used with."""
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise KeyMaterialError(f"RSA keys must be at least 2048 bits, got {key.key_size}")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyMaterialError(f"EC keys must use P-256 for ES256, got {key.curve.name}")
        return "ES256"
    raise KeyMaterialError(f"unsupported key type {type(key).__name__}")


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The public JWK for ``key``, with ``kid`` (thumbprint), ``alg`` and ``use``."""
    alg = algorithm_for(key)
    if isinstance(key, rsa.RSAPublicKey):
        rsa_numbers = key.public_numbers()
        jwk = {"kty": "RSA", "n": _b64url_uint(rsa_numbers.n), "e": _b64url_uint(rsa_numbers.e)}
    else:
        ec_numbers = key.public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url_fixed(ec_numbers.x, 32),
            "y": _b64url_fixed(ec_numbers.y, 32),
        }
    return {**jwk, "kid": thumbprint(jwk), "alg": alg, "use": "sig"}


def generate_private_key(algorithm: str = "RS256") -> PrivateKey:
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise KeyMaterialError(f"algorithm must be one of {sorted(SUPPORTED_ALGORITHMS)}, got {algorithm!r}")


def private_key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key_pem(data: bytes, source: str = "key") -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"{source}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"{source}: unsupported private key type {type(key).__name__}")
    algorithm_for(key)
    return key


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write a private key readable by its owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_key_pem(key))
    os.replace(tmp, path)


def write_jwks(path: Path, jwks: Mapping[str, Any]) -> None:
    """Write a public JWKS document atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(jwks, indent=2) + "\n")
    tmp.chmod(0o644)
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key ready to verify signatures: parsed once, bound to one algorithm."""

    kid: str
    algorithm: str
    key: Key
    jwk: dict[str, str]


def verification_key_from_jwk(data: Mapping[str, Any]) -> VerificationKey:
    if data.get("use", "sig") != "sig":
        raise KeyMaterialError(f"JWK {data.get('kid')!r} is not a signing key")
    kid = thumbprint(data)
    if "kid" in data and data["kid"] != kid:
        # Trust the key material, not a label: a mismatched kid is a broken or forged JWKS.
        raise KeyMaterialError(f"JWK kid {data['kid']!r} does not match its thumbprint {kid!r}")
    alg = "RS256" if data["kty"] == "RSA" else "ES256"
    if data.get("alg", alg) != alg:
        raise KeyMaterialError(f"JWK {kid}: algorithm {data.get('alg')!r} is not allowed")
    public = {k: str(v) for k, v in data.items() if k in {"kty", "n", "e", "crv", "x", "y"}}
    key = jose_jwk.construct(public, alg)
    return VerificationKey(kid=kid, algorithm=alg, key=key, jwk={**public, "kid": kid, "alg": alg, "use": "sig"})


def verification_key_from_public(key: PublicKey) -> VerificationKey:
    return verification_key_from_jwk(public_jwk(key))


def parse_jwks(document: Mapping[str, Any], source: str = "JWKS") -> dict[str, VerificationKey]:
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise KeyMaterialError(f"{source}: expected a JWKS document with a 'keys' list")
    result: dict[str, VerificationKey] = {}
    for entry in keys:
        try:
            vk = verification_key_from_jwk(entry)
        except (KeyError, KeyMaterialError, ValueError) as exc:
            raise KeyMaterialError(f"{source}: bad key {entry.get('kid', '?')!r}: {exc}") from None
        result[vk.kid] = vk
    return result


def _keys_from_file(path: Path) -> dict[str, VerificationKey]:
    data = path.read_bytes()
    if path.suffix == ".json" or data.lstrip().startswith(b"{"):
        try:
            document = json.loads(data)
        except json.JSONDecodeError as exc:
            raise KeyMaterialError(f"{path}: invalid JSON ({exc})") from None
        return parse_jwks(document, str(path))
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: not a PEM public key or JWKS file ({exc})") from None
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise KeyMaterialError(f"{path}: unsupported public key type")
    vk = verification_key_from_public(public)
    return {vk.kid: vk}


def load_verification_keys(path: Path) -> dict[str, VerificationKey]:
    """Public keys from a JWKS file, a PEM file, or a folder of those."""
    if not path.exists():
        raise KeyMaterialError(f"{path}: no such file or folder")
    files = (
        sorted(p for p in path.iterdir() if p.suffix in {".json", ".pem"} and p.is_file()) if path.is_dir() else [path]
    )
    keys: dict[str, VerificationKey] = {}
    for file in files:
        keys.update(_keys_from_file(file))
    if not keys:
        raise KeyMaterialError(f"{path}: no public keys found")
    return keys
