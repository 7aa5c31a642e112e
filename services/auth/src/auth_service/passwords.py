"""Password hashing and policy.

``bcrypt_sha256`` pre-hashes with SHA-256, so passwords longer than bcrypt's 72-byte
limit are not silently truncated. Plain ``bcrypt`` hashes are still accepted and are
upgraded at the next successful login, as are hashes made at a lower cost.
"""

from __future__ import annotations

import secrets
import unicodedata

import anyio
from passlib.context import CryptContext

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024


def password_problem(password: str) -> str | None:
    """Why ``password`` is not acceptable for a new account, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"password must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"password must be at most {MAX_PASSWORD_LENGTH} characters"
    if not password.strip():
        return "password must not be only whitespace"
    return None


def _normalise(password: str) -> str:
    # The same password typed on two keyboards can arrive in two Unicode forms.
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    """A CryptContext at the configured cost, plus a dummy hash for unknown users."""

    def __init__(self, rounds: int) -> None:
        self.context = CryptContext(
            schemes=["bcrypt_sha256", "bcrypt"],
            default="bcrypt_sha256",
            deprecated=["bcrypt"],
            bcrypt_sha256__rounds=rounds,
            # A hash below the configured cost "needs update", so logins raise old costs.
            bcrypt_sha256__min_rounds=rounds,
        )
        # Verifying against this when the user does not exist costs the same as a real check,
        # so response time does not reveal which usernames exist.
        self._dummy_hash = self.context.hash(secrets.token_urlsafe(16))

    def hash_sync(self, password: str) -> str:
        return self.context.hash(_normalise(password))

    def verify_sync(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """(valid, new hash when the stored one should be replaced)."""
        if hashed is None:
            self.context.verify(_normalise(password), self._dummy_hash)
            return False, None
        try:
            return self.context.verify_and_update(_normalise(password), hashed)
        except ValueError:
            # A malformed stored hash is a failed login, never a 500.
            return False, None

    async def hash(self, password: str) -> str:
        # bcrypt is deliberately slow CPU work: keep it off the event loop.
        return await anyio.to_thread.run_sync(self.hash_sync, password)

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        return await anyio.to_thread.run_sync(self.verify_sync, password, hashed)
