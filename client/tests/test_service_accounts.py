"""A service account created through the admin API predicts with Client(client_id, client_secret)."""

from __future__ import annotations

import pytest
from conftest import ADMIN_PASSWORD, ADMIN_USERNAME, ROW
from modelgate_client import AsyncClient, AuthenticationError, Client


def test_service_account_lifecycle(base_url: str) -> None:
    with Client(base_url, username=ADMIN_USERNAME, password=ADMIN_PASSWORD, scope="admin") as admin:
        created = admin.create_client("nightly scoring", scopes=["predict"])
        client_id, secret = created["client_id"], created["client_secret"]
        assert created["scopes"] == ["predict"]
        assert any(c["client_id"] == client_id for c in admin.clients(limit=200)["items"])

        with Client(base_url, client_id=client_id, client_secret=secret) as program:
            assert program.predict("diabetes", [ROW])[0]["label"] in (0, 1)
            assert secret not in repr(program)

        rotated = admin.rotate_client_secret(client_id, grace_seconds=0)
        new_secret = rotated["client_secret"]
        with Client(base_url, client_id=client_id, client_secret=secret) as old, pytest.raises(AuthenticationError):
            old.predict("diabetes", [ROW])
        with Client(base_url, client_id=client_id, client_secret=new_secret) as program:
            assert program.predict("diabetes", [ROW])

            assert admin.disable_client(client_id)["disabled"] is True
            # The token it holds is refused now; a new grant is refused too.
            with pytest.raises(AuthenticationError) as refused:
                program.predict("diabetes", [ROW])
            assert new_secret not in str(refused.value) and new_secret not in repr(refused.value)

        admin.enable_client(client_id)
        admin.delete_client(client_id)
        with (
            Client(base_url, client_id=client_id, client_secret=new_secret) as gone,
            pytest.raises(AuthenticationError),
        ):
            gone.models()


async def test_async_service_account(base_url: str) -> None:
    async with AsyncClient(base_url, username=ADMIN_USERNAME, password=ADMIN_PASSWORD, scope="admin") as admin:
        created = await admin.create_client("async job", scopes=["predict", "models:read"])
        try:
            async with AsyncClient(
                base_url, client_id=created["client_id"], client_secret=created["client_secret"]
            ) as program:
                assert "diabetes" in [m["name"] for m in await program.models()]
                assert (await program.predict("diabetes", [ROW]))[0]["label"] in (0, 1)
        finally:
            await admin.delete_client(created["client_id"])
