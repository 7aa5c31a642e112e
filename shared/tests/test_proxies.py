from __future__ import annotations

import pytest
from modelgate_shared.proxies import forwarded_client, parse_networks, split_forwarded_for

TRUSTED = parse_networks(["10.0.0.0/8", "::1"])


def test_networks_are_parsed_and_bad_entries_named() -> None:
    assert [str(n) for n in TRUSTED] == ["10.0.0.0/8", "::1/128"]
    with pytest.raises(ValueError, match="'not-an-ip' is not an IP address or CIDR network"):
        parse_networks(["127.0.0.1", "not-an-ip"])


def test_forwarded_for_headers_join_into_one_chain() -> None:
    assert split_forwarded_for(["1.1.1.1, 2.2.2.2", " 3.3.3.3 ,"]) == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]


@pytest.mark.parametrize(
    ("peer", "chain", "expected"),
    [
        ("8.8.8.8", ["1.2.3.4"], "8.8.8.8"),  # untrusted peer: the header is the client's own claim
        ("10.0.0.1", ["9.9.9.9", "1.2.3.4"], "1.2.3.4"),  # left of our proxy's entry is client-supplied
        ("10.0.0.1", ["1.2.3.4", "10.0.0.7"], "1.2.3.4"),  # a second trusted proxy is skipped
        ("10.0.0.1", ["10.0.0.7"], "10.0.0.1"),  # only proxies: the peer is the best we know
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", ["not-an-ip"], None),
    ],
)
def test_forwarded_client(peer: str, chain: list[str], expected: str | None) -> None:
    assert forwarded_client(peer, chain, TRUSTED) == expected
