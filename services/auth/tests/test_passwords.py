from __future__ import annotations

import pytest
from auth_service.passwords import MAX_PASSWORD_LENGTH, PasswordHasher, password_problem


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
