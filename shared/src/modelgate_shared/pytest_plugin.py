"""Pytest fixtures for real Postgres and Redis (see ``backing`` for how they are found).

Registered as a ``pytest11`` entry point, so every service's tests get the same fixtures.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest

from .backing import Provided, create_database, temporary_backing


@pytest.fixture(scope="session")
def backing() -> Iterator[tuple[Provided, Provided]]:
    with temporary_backing() as pair:
        yield pair


@pytest.fixture(scope="session")
def postgres_server_url(backing: tuple[Provided, Provided]) -> str:
    return backing[0].url


@pytest.fixture(scope="session")
def redis_url(backing: tuple[Provided, Provided]) -> str:
    return backing[1].url


@pytest.fixture(scope="session")
def make_database(postgres_server_url: str) -> Callable[[], str]:
    """Factory: a new, empty database on the test server, returned as a URL."""

    def factory() -> str:
        return asyncio.run(create_database(postgres_server_url, f"t_{uuid.uuid4().hex[:12]}"))

    return factory


@pytest.fixture
def database_url(make_database: Callable[[], str]) -> str:
    """A fresh empty database for one test."""
    return make_database()
