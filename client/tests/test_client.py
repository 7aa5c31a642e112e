"""Predictions in every input shape, CSV uploads, the V2 protocol and typed errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ADMIN_PASSWORD, ADMIN_USERNAME, FEATURES, ROW
from modelgate_client import (
    AsyncClient,
    AuthenticationError,
    Client,
    NotFound,
    PermissionDenied,
    ValidationError,
)

MODEL = "diabetes"


def test_predict_returns_the_shape_it_was_given(base_url: str, user: tuple[str, str]) -> None:
    username, password = user
    with Client(base_url, username=username, password=password) as client:
        records = client.predict(MODEL, [ROW, {**ROW, "plas": 85}])
        assert len(records) == 2 and records[0]["label"] in (0, 1)
        assert set(records[0]["probabilities"]) == {"0", "1"}

        frame = pd.DataFrame([ROW, {**ROW, "plas": 85}, {**ROW, "age": 22}], index=["a", "b", "c"])
        predicted = client.predict(MODEL, frame)
        assert isinstance(predicted, pd.DataFrame)
        assert list(predicted.index) == ["a", "b", "c"]
        assert {"label", "probability_0", "probability_1"} <= set(predicted.columns)
        assert predicted["label"].iloc[0] == records[0]["label"]

        array = np.array([[ROW[f] for f in FEATURES]] * 4, dtype=np.float64)
        labels = client.predict(MODEL, array)
        assert isinstance(labels, np.ndarray) and labels.shape == (4,)
        assert labels[0] == records[0]["label"]


async def test_async_client_has_the_same_api(base_url: str, user: tuple[str, str]) -> None:
    username, password = user
    async with AsyncClient(base_url, username=username, password=password) as client:
        names = [m["name"] for m in await client.models()]
        assert MODEL in names
        detail = await client.model(MODEL)
        assert detail["features"] == list(FEATURES)
        predicted = await client.predict(MODEL, pd.DataFrame([ROW]))
        assert list(predicted.columns[:1]) == ["label"]
        outputs = await client.infer_v2(MODEL, np.array([[ROW[f] for f in FEATURES]]))
        assert outputs


def test_predict_csv_streams_a_file(base_url: str, user: tuple[str, str], patients_csv: Path) -> None:
    username, password = user
    rows = len(patients_csv.read_text().splitlines()) - 1
    with Client(base_url, username=username, password=password) as client:
        predictions = client.predict_csv(MODEL, patients_csv)
        assert len(predictions) == rows
        with patients_csv.open("rb") as file:
            text = client.predict_csv(MODEL, file, as_csv=True)
        lines = text.strip().splitlines()
        assert len(lines) == rows + 1 and lines[0].startswith(",".join(FEATURES))


def test_infer_v2_takes_and_returns_numpy(base_url: str, user: tuple[str, str]) -> None:
    username, password = user
    batch = np.array([[ROW[f] for f in FEATURES], [1, 85, 66, 29, 0, 26.6, 0.351, 31]], dtype=np.float64)
    with Client(base_url, username=username, password=password) as client:
        outputs = client.infer_v2(MODEL, batch)
        expected = [p["label"] for p in client.predict(MODEL, batch.tolist())]
    arrays = list(outputs.values())
    assert all(isinstance(a, np.ndarray) for a in arrays)
    labels = next(a for a in arrays if a.ndim == 1)
    assert labels.tolist() == expected
    assert any(a.shape == (2, 2) for a in arrays)  # the probabilities


def test_errors_are_typed_and_carry_the_request_id(base_url: str, user: tuple[str, str]) -> None:
    username, password = user
    with Client(base_url, username=username, password=password) as client:
        with pytest.raises(NotFound) as missing:
            client.model("no-such-model")
        assert missing.value.status == 404 and missing.value.request_id

        with pytest.raises(ValidationError) as invalid:
            client.predict(MODEL, [{**ROW, "age": "old"}])
        assert invalid.value.status == 422 and invalid.value.request_id
        assert "age" in invalid.value.message

        with pytest.raises(PermissionDenied) as denied:
            client.usage()
        assert denied.value.status == 403 and denied.value.request_id

    wrong = f"{password}-wrong"
    with Client(base_url, username=username, password=wrong) as client, pytest.raises(AuthenticationError) as refused:
        client.models()
    assert refused.value.code == "invalid_grant" and refused.value.request_id
    for text in (str(refused.value), repr(refused.value), repr(client), repr(client.auth)):
        assert wrong not in text and password not in text


def test_admin_calls(base_url: str, user: tuple[str, str]) -> None:
    username, _ = user
    with Client(base_url, username=ADMIN_USERNAME, password=ADMIN_PASSWORD, scope="admin") as admin:
        page = admin.users(limit=200)
        found = [u for u in page["items"] if u["username"] == username]
        assert found and page["total"] >= 2
        assert admin.user(found[0]["id"])["username"] == username
        usage = admin.usage(window_seconds=600)
        assert "users" in usage
        log = admin.request_log(limit=5)
        assert isinstance(log, dict)
        admin.delete_user(found[0]["id"])
        with pytest.raises(NotFound):
            admin.user(found[0]["id"])
