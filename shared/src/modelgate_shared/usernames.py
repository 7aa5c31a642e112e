"""Usernames: the one normal form auth stores and finds accounts by, which the gateway's login
guard keys on too. Both call these functions: any other spelling of the rule in either service
would let one account have two buckets (issue 10, defect 2)."""

from __future__ import annotations

import re
import unicodedata

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
USERNAME_RULE = "username must be 3-64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"


def canonical_username(raw: str) -> str:
    """NFKC, trimmed, case-folded: 'Alice', ' ALICE ' and the full-width spelling are one name.

    Total (never raises): the gateway keys a login on it whether or not the name is valid.
    """
    return unicodedata.normalize("NFKC", raw).strip().casefold()


def normalise_username(raw: str) -> str:
    """``canonical_username``, then the account-name rule; ValueError (``USERNAME_RULE``) if it fails."""
    value = canonical_username(raw)
    if not _USERNAME.match(value):
        raise ValueError(USERNAME_RULE)
    return value
