"""Text that is bound for Postgres: pydantic types that refuse what it cannot store, and a
cleaner for text that is recorded rather than validated (user agents, logged paths).

Postgres ``text`` cannot hold NUL (U+0000), and a lone surrogate (U+D800..U+DFFF, which a
JSON ``"\\ud800"`` escape produces) has no UTF-8 encoding. Either one passes pydantic's ``str``
and fails later, in the driver or the database: a 500 instead of a 422, raised where the
row's other values (hashes, emails) are at hand.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# What no stored text may hold.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# What a one-line field shown to people (a name, an email, a filter) may not hold either:
# C0 and C1 controls and DEL, line and paragraph separators, and the bidirectional
# embeddings, overrides and isolates that make one string display as another.
_NOT_SINGLE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _describe(match: re.Match[str]) -> str:
    # The code point and where, never the text around it: messages reach 422 bodies and logs.
    return f"U+{ord(match.group()):04X} at position {match.start()}"


def unstorable_character(value: str) -> str | None:
    """The first character Postgres cannot store, described ("U+0000 at position 3"), or None."""
    match = _UNSTORABLE.search(value)
    return _describe(match) if match else None


def control_character(value: str) -> str | None:
    """The first character a single-line field refuses (see ``SingleLineText``), or None."""
    match = _NOT_SINGLE_LINE.search(value)
    return _describe(match) if match else None


def _check_storable(value: str) -> str:
    problem = unstorable_character(value)
    if problem:
        raise ValueError(f"must not contain NUL or unpaired surrogates ({problem})")
    return value


def _check_single_line(value: str) -> str:
    problem = control_character(value)
    if problem:
        raise ValueError(f"must not contain control, line-break or bidirectional-override characters ({problem})")
    return value


# Any text a client sends that is stored or hashed (passwords included: a surrogate has no
# bytes to hash). Tabs and newlines are allowed.
StoredText = Annotated[str, AfterValidator(_check_storable)]
# Names, usernames, emails, query filters: printable text on one line.
SingleLineText = Annotated[str, AfterValidator(_check_single_line)]


def storable(value: str) -> str:
    """``value`` with NUL and unpaired surrogates replaced by U+FFFD: for text that is recorded
    as it came (a User-Agent, a request path), where refusing the request is not the answer."""
    if value.isascii() and "\x00" not in value:
        return value  # the common case, checked in C
    return _UNSTORABLE.sub("\ufffd", value)
