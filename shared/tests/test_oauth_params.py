"""RFC 6749 3.2: no request parameter twice; 2.3.1: client credentials. At auth and at the gateway alike."""

from __future__ import annotations

import base64

import pytest
from modelgate_shared.oauth_params import (
    MalformedCredentials,
    authenticated_client_id,
    basic_credentials,
    repeated_parameter,
    repeated_parameter_error,
)


def test_repeated_parameter_names_the_first_repeat() -> None:
    assert repeated_parameter([]) is None
    assert repeated_parameter(["grant_type", "username", "password"]) is None
    assert repeated_parameter(["username", "password", "username", "password"]) == "username"
    assert repeated_parameter(["a", "b", "b", "a"]) == "b"
    assert repeated_parameter(["", ""]) == ""


def test_the_error_names_the_parameter_cut_short() -> None:
    assert "'username' is repeated" in repeated_parameter_error("username")
    assert len(repeated_parameter_error("x" * 10_000)) < 200


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


def test_basic_credentials_are_form_urlencoded_inside_base64() -> None:
    assert basic_credentials(basic(b"a%3Ab:c+d%25")) == ("a:b", "c d%")
    assert basic_credentials(basic(b"id:with:colons")) == ("id", "with:colons")
    assert basic_credentials("bAsIc  " + base64.b64encode(b"id:").decode()) == ("id", "")
    assert basic_credentials(basic("\u00e9:\u00e9".encode())) == ("\u00e9", "\u00e9")
    assert basic_credentials("Bearer abc") is None
    assert basic_credentials("") is None


@pytest.mark.parametrize(
    "value",
    ["Basic", "Basic !!!", "Basic " + "A" * 5, basic(b"no colon"), basic(b"\xff:x"), basic(b"%ED%A0%80:x")],
)
def test_malformed_basic_credentials(value: str) -> None:
    with pytest.raises(MalformedCredentials):
        basic_credentials(value)


def test_the_client_id_the_token_endpoint_authenticates() -> None:
    cc = "client_credentials"
    assert authenticated_client_id(cc, basic(b"app:x"), None) == "app"
    assert authenticated_client_id(cc, None, "app") == "app"
    assert authenticated_client_id(cc, basic(b"app:x"), "other") == "app"
    assert authenticated_client_id(cc, basic(b":"), "app") == "app"  # an empty Basic id presents nothing
    assert authenticated_client_id(cc, "Bearer x", None) == ""
    # Other grants: only a service account's id (a public client naming itself is not authenticated).
    assert authenticated_client_id("password", basic(b"mgc_abc:x"), None) == "mgc_abc"
    assert authenticated_client_id("password", basic(b"modelgate-docs:"), None) == ""
    assert authenticated_client_id("refresh_token", None, "modelgate-docs") == ""
    with pytest.raises(MalformedCredentials):
        authenticated_client_id("password", "Basic !!!", None)
