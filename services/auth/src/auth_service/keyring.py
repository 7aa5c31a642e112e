"""Signing keys: private PEM files in KEYS_DIR, the newest of which signs.

Every key in the folder is published, so a rotation (a new file) needs no downtime:
tokens signed by an older key keep verifying until they expire, and the older file can
be deleted once they have. Key files are named ``<UTC timestamp>-<kid prefix>.pem`` so
that "newest" survives copies that reset modification times.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jose import jwk as jose_jwk
from jose.backends.base import Key
from modelgate_shared.keys import (
    KeyMaterialError,
    PrivateKey,
    VerificationKey,
    algorithm_for,
    generate_private_key,
    load_private_key_pem,
    public_jwk,
    verification_key_from_public,
    write_jwks,
    write_private_key,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    path: Path
    signer: Key  # parsed once; jose signs with it directly
    verification: VerificationKey

    @property
    def public_jwk(self) -> dict[str, str]:
        return self.verification.jwk


def _load_key_file(path: Path) -> SigningKey:
    private = load_private_key_pem(path.read_bytes(), str(path))
    algorithm = algorithm_for(private)
    verification = verification_key_from_public(private.public_key())
    signer = jose_jwk.construct(private, algorithm)
    return SigningKey(verification.kid, algorithm, path, signer, verification)


def key_files(keys_dir: Path) -> list[Path]:
    if not keys_dir.is_dir():
        return []
    return sorted(p for p in keys_dir.iterdir() if p.is_file() and p.suffix == ".pem")


def _check_permissions(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("private key %s is readable by group/others (mode %o); chmod 600 it", path, mode)


class KeyRing:
    """The parsed keys of one folder; ``refresh()`` picks up rotations without a restart."""

    def __init__(
        self,
        keys_dir: Path,
        signing_kid: str | None = None,
        *,
        jwks_file: Path | None = None,
        rescan_seconds: float = 2.0,
    ) -> None:
        self.keys_dir = keys_dir
        self.signing_kid = signing_kid
        self.jwks_file = jwks_file
        # How often a request may look at the folder for a rotation (one stat per key file).
        self.rescan_seconds = rescan_seconds
        self._last_scan = float("-inf")
        self._keys: dict[str, SigningKey] = {}
        self._signing: SigningKey | None = None
        self._fingerprint: tuple[tuple[str, int, int], ...] | None = None

    def _current_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        entries = []
        for path in key_files(self.keys_dir):
            stat = path.stat()
            entries.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(entries)

    def load(self) -> None:
        """Parse every key; raise ``KeyMaterialError`` when none can sign."""
        fingerprint = self._current_fingerprint()
        keys: dict[str, SigningKey] = {}
        ordered: list[SigningKey] = []
        for path in key_files(self.keys_dir):
            _check_permissions(path)
            key = _load_key_file(path)
            keys[key.kid] = key
            ordered.append(key)
        if not ordered:
            raise KeyMaterialError(
                f"{self.keys_dir}: no private keys (*.pem); run `python -m auth_service keys generate`"
            )
        if self.signing_kid:
            if self.signing_kid not in keys:
                raise KeyMaterialError(f"{self.keys_dir}: SIGNING_KID {self.signing_kid!r} is not among the keys")
            signing = keys[self.signing_kid]
        else:
            signing = ordered[-1]
        self._keys, self._signing, self._fingerprint = keys, signing, fingerprint

    def refresh(self) -> bool:
        """Reload (and republish) when the folder changed. Keeps the old keys on failure."""
        self._last_scan = time.monotonic()
        try:
            if self._current_fingerprint() == self._fingerprint:
                return False
            self.load()
            if self.jwks_file is not None:
                write_jwks(self.jwks_file, self.jwks())
        except (OSError, KeyMaterialError) as exc:
            log.error("key folder changed but could not be loaded, keeping previous keys: %s", exc)
            return False
        log.info("signing keys reloaded; signing kid %s", self.signing.kid)
        return True

    def maybe_refresh(self) -> bool:
        """``refresh()``, at most once per ``rescan_seconds``."""
        if time.monotonic() - self._last_scan < self.rescan_seconds:
            return False
        return self.refresh()

    @property
    def ready(self) -> bool:
        return self._signing is not None

    @property
    def signing(self) -> SigningKey:
        if self._signing is None:
            raise KeyMaterialError("no signing key loaded")
        return self._signing

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys.values())

    def verification_key(self, kid: str) -> VerificationKey | None:
        key = self._keys.get(kid)
        return key.verification if key else None

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk for k in self._keys.values()]}


def new_key_path(keys_dir: Path, kid: str, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return keys_dir / f"{stamp}-{kid[:16]}.pem"


def create_key(keys_dir: Path, algorithm: str) -> Path:
    """Generate a key and write it (0600) into ``keys_dir``; a folder created here is owner-only."""
    if not keys_dir.exists():
        # An existing folder (say, a mounted volume) keeps the mode its owner chose.
        keys_dir.mkdir(parents=True)
        keys_dir.chmod(0o700)
    private: PrivateKey = generate_private_key(algorithm)
    kid = public_jwk(private.public_key())["kid"]
    path = new_key_path(keys_dir, kid)
    write_private_key(path, private)
    return path


def publish(ring: KeyRing, jwks_file: Path | None) -> None:
    if jwks_file is not None:
        write_jwks(jwks_file, ring.jwks())


class KeyRingSource:
    """Adapts the key ring to ``modelgate_shared.tokens.KeySource`` so auth verifies its own tokens locally."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    async def get(self, kid: str) -> VerificationKey | None:
        key = self._ring.verification_key(kid)
        # Another replica may already sign with a key added to the shared folder.
        if key is None and self._ring.maybe_refresh():
            key = self._ring.verification_key(kid)
        return key

    async def load(self) -> None:
        self._ring.refresh()

    @property
    def ready(self) -> bool:
        return self._ring.ready
