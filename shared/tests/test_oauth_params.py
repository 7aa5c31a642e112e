"""RFC 6749 3.2: no request parameter twice, at auth and at the gateway alike."""

from __future__ import annotations

from modelgate_shared.oauth_params import repeated_parameter, repeated_parameter_error


def test_repeated_parameter_names_the_first_repeat() -> None:
    assert repeated_parameter([]) is None
    assert repeated_parameter(["grant_type", "username", "password"]) is None
    assert repeated_parameter(["username", "password", "username", "password"]) == "username"
    assert repeated_parameter(["a", "b", "b", "a"]) == "b"
    assert repeated_parameter(["", ""]) == ""


def test_the_error_names_the_parameter_cut_short() -> None:
    assert "'username' is repeated" in repeated_parameter_error("username")
    assert len(repeated_parameter_error("x" * 10_000)) < 200
