"""What a scope is: the fixed ones and ``predict:<model>``, and their stable order."""

from __future__ import annotations

import pytest
from modelgate_shared.scopes import (
    ADMIN,
    BASE_SCOPES,
    MAX_SCOPE_LENGTH,
    MODEL_NAME_MAX_LENGTH,
    MODEL_SCOPE_PREFIX,
    MODELS_READ,
    PREDICT,
    is_known_scope,
    is_model_name,
    model_scope,
    ordered_scopes,
)

GOOD_NAMES = ["churn", "Churn2", "fraud-v2.1", "a_b", "7", "m" * MODEL_NAME_MAX_LENGTH]
BAD_NAMES = [
    "",
    ".hidden",
    "..",
    "-flag",
    "_x",
    "../x",
    "a/b",
    "a\\b",
    "a b",
    "a:b",
    "a*",
    "churn\n",
    "\nchurn",
    "chürn",
    "m" * (MODEL_NAME_MAX_LENGTH + 1),
]


def test_base_scopes() -> None:
    assert BASE_SCOPES == (PREDICT, MODELS_READ, ADMIN) == ("predict", "models:read", "admin")
    assert MODEL_SCOPE_PREFIX == "predict:"
    assert all(is_known_scope(s) for s in BASE_SCOPES)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_model_scope_of_a_good_name(name: str) -> None:
    assert is_model_name(name)
    scope = model_scope(name)
    assert scope == f"predict:{name}"
    assert is_known_scope(scope)
    assert len(scope) <= MAX_SCOPE_LENGTH


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_name_has_no_scope(name: str) -> None:
    assert not is_model_name(name)
    assert not is_known_scope(MODEL_SCOPE_PREFIX + name)
    with pytest.raises(ValueError, match="must match"):
        model_scope(name)


def test_the_error_quotes_a_huge_name_cut_short() -> None:
    with pytest.raises(ValueError) as exc:
        model_scope("x" * 100_000 + "/")
    assert len(str(exc.value)) < 200


@pytest.mark.parametrize(
    "scope", ["", "root", "predict:", "Predict:churn", " predict", "predict ", "predict:churn:v2", "models:churn"]
)
def test_unknown_scopes(scope: str) -> None:
    assert not is_known_scope(scope)


def test_the_longest_scope_is_the_longest_model_scope() -> None:
    assert MAX_SCOPE_LENGTH == len(model_scope("m" * MODEL_NAME_MAX_LENGTH)) == 72
    assert max(len(s) for s in BASE_SCOPES) <= MAX_SCOPE_LENGTH


def test_ordered_scopes_puts_the_fixed_ones_first_then_model_scopes_by_name() -> None:
    given = ["predict:zeta", "admin", "bogus", "predict:alpha", "predict", "predict:../x", "predict:alpha"]
    assert ordered_scopes(given) == ("predict", "admin", "predict:alpha", "predict:zeta")
    assert ordered_scopes(reversed(given)) == ordered_scopes(given)
    assert ordered_scopes(iter(given)) == ordered_scopes(given)  # any iterable, read once
    assert ordered_scopes([]) == ()
