"""Request ids taken from clients."""

from __future__ import annotations

from modelgate_shared.request_context import accept_or_generate


def test_a_client_request_id_is_kept_without_its_optional_whitespace() -> None:
    # RFC 9110 5.5: the whitespace around a header value is not part of it (issue 10, defect 4).
    assert accept_or_generate(" trace-1\t") == "trace-1"
    assert accept_or_generate("trace-1") == "trace-1"
    assert accept_or_generate("trace 1") != "trace 1"
    assert len(accept_or_generate(None)) == 32
