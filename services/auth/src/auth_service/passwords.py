"""Password hashing and policy.

``bcrypt_sha256`` pre-hashes with SHA-256, so passwords longer than bcrypt's 72-byte
limit are not silently truncated. Plain ``bcrypt`` hashes are still accepted and are
upgraded at the next successful login, as are hashes made at a lower cost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, cast

from modelgate_shared.stored_text import unstorable_character
from passlib.context import CryptContext

T = TypeVar("T")
log = logging.getLogger(__name__)

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
    if unstorable_character(password):
        # An unpaired surrogate has no UTF-8 bytes to hash; NUL is cut short by some bcrypts.
        return "password must not contain NUL or unpaired surrogate characters"
    return None


def _normalise(password: str) -> str:
    # The same password typed on two keyboards can arrive in two Unicode forms.
    return unicodedata.normalize("NFKC", password)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under ``taskset`` or a cgroup
    cpuset), not the machine's count: more hashing threads than that only time-slice."""
    return len(os.sched_getaffinity(0))


class HashingBusy(Exception):
    """Too many hashes are already waiting; ``retry_after`` is a whole number of seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many password checks in progress; retry in {retry_after} s")
        self.retry_after = retry_after


class PasswordHasher:
    """A CryptContext at the configured cost, plus a dummy hash for unknown users.

    Hashes run on the hasher's own small pool (``threads``, default one per available CPU)
    at ``nice``, never on the event loop or anyio's shared pool of 40 threads: a login storm
    then uses at most those CPUs, and at a nice value above 0 it yields them to the event
    loops of every service on the machine. At most ``max_pending`` hashes wait or run at
    once; beyond that ``hash``/``verify`` raise ``HashingBusy`` at once instead of queueing
    work whose client has likely given up by the time it runs. Call ``close`` when done.
    """

    def __init__(self, rounds: int, *, threads: int | None = None, nice: int = 0, max_pending: int = 64) -> None:
        if not 0 <= nice <= 19:
            raise ValueError(f"nice must be within 0..19, got {nice}")
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
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
        started = time.perf_counter()
        self._dummy_hash = self.context.hash(secrets.token_urlsafe(16))
        self._seconds_per_hash = time.perf_counter() - started
        self.threads = threads or available_cpus()
        self.nice = nice
        self.max_pending = max_pending
        self._pending = 0
        self._executor = ThreadPoolExecutor(
            max_workers=self.threads, thread_name_prefix="bcrypt", initializer=self._lower_priority
        )

    def _lower_priority(self) -> None:
        # Per thread (Linux nice applies to the thread id), so the event loop keeps its priority.
        # Only ever raised: lowering below the process's own nice would need CAP_SYS_NICE.
        tid = threading.get_native_id()
        try:
            if self.nice > os.getpriority(os.PRIO_PROCESS, tid):
                os.setpriority(os.PRIO_PROCESS, tid, self.nice)
        except OSError as exc:
            # An initializer that raises breaks the pool and every login with it; a hash at
            # normal priority is the lesser harm.
            log.warning("cannot set the hashing thread's nice value to %d: %s", self.nice, exc)

    def close(self) -> None:
        """Stop taking work; hashes already running finish, queued ones are cancelled."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def hash_sync(self, password: str) -> str:
        # passlib ships no type information: hash returns the encoded hash string.
        return cast(str, self.context.hash(_normalise(password)))

    def verify_sync(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """(valid, new hash when the stored one should be replaced)."""
        if hashed is None:
            self.context.verify(_normalise(password), self._dummy_hash)
            return False, None
        try:
            return cast(tuple[bool, str | None], self.context.verify_and_update(_normalise(password), hashed))
        except ValueError:
            # A malformed stored hash is a failed login, never a 500.
            return False, None

    async def _run(self, func: Callable[..., T], *args: object) -> T:
        # The counter is only touched on the event loop thread, so it needs no lock.
        if self._pending >= self.max_pending:
            # Roughly when the queue ahead will have drained.
            raise HashingBusy(max(1, math.ceil(self._pending * self._seconds_per_hash / self.threads)))
        self._pending += 1
        try:
            # bcrypt is deliberately slow CPU work: keep it off the event loop.
            return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
        finally:
            self._pending -= 1

    async def hash(self, password: str) -> str:
        return await self._run(self.hash_sync, password)

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        return await self._run(self.verify_sync, password, hashed)
