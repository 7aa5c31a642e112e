"""RFC 6749 request parameters: the rule auth's token endpoint and the gateway's login guard both apply.

RFC 6749 3.1/3.2: "Request and response parameters MUST NOT be included more than once."
With a parameter twice, two parsers can each pick a different copy (the gateway's guard the
first ``username``, auth the last): such a request is refused, by both, as ``invalid_request``.
"""

from __future__ import annotations

from collections.abc import Iterable


def repeated_parameter(names: Iterable[str]) -> str | None:
    """The first parameter name that occurs more than once, or None."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def repeated_parameter_error(name: str) -> str:
    """The ``error_description`` both services give (the name cut short: it is client input)."""
    return f"parameter {name[:64]!r} is repeated; RFC 6749 parameters must not be included more than once"
