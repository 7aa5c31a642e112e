"""The one username normal form auth and the gateway share (issue 10, defect 2)."""

from __future__ import annotations

import pytest
from modelgate_shared.usernames import USERNAME_RULE, canonical_username, normalise_username


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.mark.parametrize(
    "spelling",
    [
        "alice",
        "ALICE",
        " Alice\t",
        full_width("alice"),
        full_width("ALICE"),
        "\U0001d41alice",  # MATHEMATICAL BOLD SMALL A
        "\u24d0lice",  # CIRCLED LATIN SMALL LETTER A
        "\u3000alice\u3000",  # ideographic spaces
    ],
)
def test_every_spelling_of_a_name_is_one_name(spelling: str) -> None:
    assert canonical_username(spelling) == "alice"
    assert normalise_username(spelling) == "alice"


def test_canonical_form_is_total_and_the_account_rule_is_separate() -> None:
    # The gateway keys on names auth would never find: no exception, the same normal form.
    assert canonical_username("") == ""
    assert canonical_username(" \u00c4nn ") == "änn"
    for bad in ["", "ab", "a b c", "änn", "-alice", "a" * 65]:
        with pytest.raises(ValueError, match="3-64 characters"):
            normalise_username(bad)
    assert "3-64 characters" in USERNAME_RULE


def test_the_normal_form_is_stable() -> None:
    for name in ["Alice", full_width("Bob.Smith"), "\U0001d41alice_1"]:
        once = normalise_username(name)
        assert normalise_username(once) == once == canonical_username(once)
