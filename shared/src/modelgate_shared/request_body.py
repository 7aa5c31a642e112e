"""The one error for a request body over its size limit, raised by every service that reads bodies."""

from __future__ import annotations


class BodyTooLarge(Exception):
    """A request body passed ``limit`` bytes; ``str(exc)`` is safe to show the client."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit
