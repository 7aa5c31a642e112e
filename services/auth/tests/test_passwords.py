from __future__ import annotations

import asyncio
import os
import threading

import pytest
from auth_service.passwords import MAX_PASSWORD_LENGTH, HashingBusy, PasswordHasher, password_problem


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(4)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 10"),
        ("x" * (MAX_PASSWORD_LENGTH + 1), "at most 1024"),
        (" " * 10, "whitespace"),
        ("ten chars!", None),
        ("x" * MAX_PASSWORD_LENGTH, None),
    ],
)
def test_policy(password: str, problem: str | None) -> None:
    found = password_problem(password)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_hash_round_trip_and_no_plaintext(hasher: PasswordHasher) -> None:
    hashed = hasher.hash_sync("correct horse battery")
    assert "correct horse" not in hashed
    assert hashed.startswith("$bcrypt-sha256$")
    assert hasher.verify_sync("correct horse battery", hashed) == (True, None)
    assert hasher.verify_sync("correct horse batterY", hashed)[0] is False


def test_passwords_sharing_the_first_72_bytes_are_distinct(hasher: PasswordHasher) -> None:
    prefix = "é" * 36  # 72 bytes of UTF-8
    hashed = hasher.hash_sync(prefix + "first")
    assert hasher.verify_sync(prefix + "first", hashed)[0] is True
    assert hasher.verify_sync(prefix + "second", hashed)[0] is False


def test_unicode_forms_of_one_password_match(hasher: PasswordHasher) -> None:
    composed = "caf\u00e9 au lait!"
    decomposed = "cafe\u0301 au lait!"
    assert hasher.verify_sync(decomposed, hasher.hash_sync(composed))[0] is True


def test_lower_cost_and_plain_bcrypt_hashes_are_upgraded(hasher: PasswordHasher) -> None:
    import bcrypt

    stronger = PasswordHasher(5)
    valid, new_hash = stronger.verify_sync("correct horse battery", hasher.hash_sync("correct horse battery"))
    assert valid and new_hash is not None and ",r=5$" in new_hash
    legacy = bcrypt.hashpw(b"correct horse battery", bcrypt.gensalt(4)).decode()
    valid, new_hash = hasher.verify_sync("correct horse battery", legacy)
    assert valid and new_hash is not None and new_hash.startswith("$bcrypt-sha256$")


def test_unknown_user_and_malformed_hash_fail_without_raising(hasher: PasswordHasher) -> None:
    assert hasher.verify_sync("anything at all", None) == (False, None)
    assert hasher.verify_sync("anything at all", "not-a-hash") == (False, None)


async def test_async_variants_run_off_the_loop(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("correct horse battery")
    assert await hasher.verify("correct horse battery", hashed) == (True, None)


def test_unknown_user_still_pays_for_a_full_cost_check(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = PasswordHasher(4)
    checked: list[str] = []
    real_verify = hasher.context.verify

    def spy(secret: str, hashed: str) -> bool:
        checked.append(hashed)
        return real_verify(secret, hashed)

    monkeypatch.setattr(hasher.context, "verify", spy)
    assert hasher.verify_sync("whatever password", None) == (False, None)
    # One real bcrypt verification at the configured cost: timing matches a wrong password.
    assert len(checked) == 1
    assert checked[0].startswith("$bcrypt-sha256$") and ",r=4$" in checked[0]


class Recorder:
    """Wraps ``hash_sync`` to see where, at what priority and how many at once hashes run."""

    def __init__(self, hasher: PasswordHasher, release: threading.Event | None = None) -> None:
        self.real = hasher.hash_sync
        self.release = release
        self.started = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0
        self.threads: set[str] = set()
        self.nice: set[int] = set()

    def __call__(self, password: str) -> str:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.threads.add(threading.current_thread().name)
            self.nice.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        self.started.release()
        try:
            if self.release is not None:
                assert self.release.wait(10)
            return self.real(password)
        finally:
            with self.lock:
                self.running -= 1


async def started(recorder: Recorder, count: int = 1) -> None:
    for _ in range(count):
        assert await asyncio.to_thread(recorder.started.acquire, True, 10)


def test_pool_defaults_to_one_thread_per_available_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PasswordHasher(4).threads == len(os.sched_getaffinity(0))
    # Under taskset -c 0 (or a one-CPU cpuset) the machine may have more CPUs than we may use.
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert PasswordHasher(4).threads == 1


async def test_hashes_run_on_the_hashers_own_bounded_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = PasswordHasher(4, threads=2)
    release = threading.Event()
    recorder = Recorder(hasher, release)
    monkeypatch.setattr(hasher, "hash_sync", recorder)
    try:
        jobs = [asyncio.create_task(hasher.hash(f"password number {i}")) for i in range(6)]
        await started(recorder, 2)
        # Two are running and four wait for a thread, however many are submitted.
        assert recorder.running == 2
        release.set()
        hashes = await asyncio.gather(*jobs)
    finally:
        hasher.close()
    assert all(hasher.verify_sync(f"password number {i}", h)[0] for i, h in enumerate(hashes))
    assert recorder.most_at_once == 2
    assert len(recorder.threads) == 2 and all(name.startswith("bcrypt") for name in recorder.threads)


@pytest.mark.parametrize("nice", [0, 7, 19])
async def test_hashing_threads_run_at_the_configured_nice_value(monkeypatch: pytest.MonkeyPatch, nice: int) -> None:
    loop_thread = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, loop_thread)
    hasher = PasswordHasher(4, threads=1, nice=nice)
    recorder = Recorder(hasher)
    monkeypatch.setattr(hasher, "hash_sync", recorder)
    try:
        await hasher.hash("correct horse battery")
    finally:
        hasher.close()
    # Never below the process's own nice: lowering it would need privileges.
    assert recorder.nice == {max(nice, before)}
    assert os.getpriority(os.PRIO_PROCESS, loop_thread) == before


@pytest.mark.parametrize("nice", [-1, 20])
def test_nice_outside_0_to_19_is_refused(nice: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.19"):
        PasswordHasher(4, nice=nice)


async def test_hashes_beyond_max_pending_are_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    hasher = PasswordHasher(4, threads=1, max_pending=2)
    release = threading.Event()
    recorder = Recorder(hasher, release)
    monkeypatch.setattr(hasher, "hash_sync", recorder)
    try:
        running = asyncio.create_task(hasher.hash("first password"))
        queued = asyncio.create_task(hasher.hash("second password"))
        await started(recorder)
        with pytest.raises(HashingBusy) as busy:
            await hasher.verify("third password", None)
        assert busy.value.retry_after >= 1
        release.set()
        await asyncio.gather(running, queued)
        # Capacity comes back as hashes finish.
        assert await hasher.verify("first password", await running) == (True, None)
    finally:
        hasher.close()


async def test_closed_hasher_takes_no_more_work() -> None:
    hasher = PasswordHasher(4)
    hasher.close()
    with pytest.raises(RuntimeError):
        await hasher.hash("correct horse battery")
