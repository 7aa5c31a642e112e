"""The other ways in to the model, through the gateway: the Open Inference Protocol (V2) and
CSV upload. Each must answer what the V1 JSON API answers for the same rows."""

from __future__ import annotations

import csv
import io
import math
import random

import httpx
import pytest

from ..conftest import bearer, signup_and_login

# Rows of the Pima data set, by feature name; two are diabetic (label 1) in the data.
ROWS = [
    {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50},
    {"preg": 1, "plas": 85, "pres": 66, "skin": 29, "test": 0, "mass": 26.6, "pedi": 0.351, "age": 31},
    {"preg": 8, "plas": 183, "pres": 64, "skin": 0, "test": 0, "mass": 23.3, "pedi": 0.672, "age": 32},
    {"preg": 1, "plas": 89, "pres": 66, "skin": 23, "test": 94, "mass": 28.1, "pedi": 0.167, "age": 21},
    {"preg": 0, "plas": 137, "pres": 40, "skin": 35, "test": 168, "mass": 43.1, "pedi": 2.288, "age": 33},
]


@pytest.fixture(scope="module")
async def token(gateway: httpx.AsyncClient) -> str:
    _, access_token = await signup_and_login(gateway)
    return access_token


@pytest.fixture(scope="module")
async def features(gateway: httpx.AsyncClient, token: str) -> list[str]:
    response = await gateway.get("/v1/models/diabetes", headers=bearer(token))
    assert response.status_code == 200, response.text
    names = list(response.json()["features"])
    assert sorted(names) == sorted(ROWS[0])
    return names


async def v1_predictions(gateway: httpx.AsyncClient, token: str, rows: list[dict[str, float]]) -> list[dict]:
    response = await gateway.post("/v1/models/diabetes/predict", json={"instances": rows}, headers=bearer(token))
    assert response.status_code == 200, response.text
    return list(response.json()["predictions"])


def many_rows(count: int) -> list[dict[str, float]]:
    """Plausible patients, varied so that both labels come out."""
    rng = random.Random(7)
    rows = []
    for i in range(count):
        base = ROWS[i % len(ROWS)]
        rows.append({**base, "plas": base["plas"] + rng.randint(-20, 20), "age": base["age"] + rng.randint(0, 9)})
    return rows


async def test_v2_model_metadata(gateway: httpx.AsyncClient, token: str, features: list[str]) -> None:
    response = await gateway.get("/v2/models/diabetes", headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "diabetes"
    assert body["versions"]
    assert body["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, len(features)]}]
    assert {o["name"]: o["shape"] for o in body["outputs"]} == {"label": [-1], "probabilities": [-1, 2]}

    assert (await gateway.get("/v2/models/diabetes")).status_code == 401
    assert (await gateway.get("/v2/models/no-such-model", headers=bearer(token))).status_code == 404


async def test_v2_infer_answers_as_v1(gateway: httpx.AsyncClient, token: str, features: list[str]) -> None:
    matrix = [[row[f] for f in features] for row in ROWS]
    response = await gateway.post(
        "/v2/models/diabetes/infer",
        json={
            "id": "e2e-v2-1",
            "inputs": [{"name": "input-0", "shape": [len(ROWS), len(features)], "datatype": "FP64", "data": matrix}],
        },
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "diabetes"
    assert body["id"] == "e2e-v2-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["shape"] == [len(ROWS)]
    assert outputs["probabilities"]["shape"] == [len(ROWS), 2]
    classes = outputs["probabilities"]["parameters"]["classes"]
    probabilities = outputs["probabilities"]["data"]  # row-major, flat

    expected = await v1_predictions(gateway, token, ROWS)
    assert outputs["label"]["data"] == [p["label"] for p in expected]
    assert outputs["label"]["data"][0] == 1  # the textbook diabetic patient
    for i, prediction in enumerate(expected):
        for j, cls in enumerate(classes):
            assert math.isclose(probabilities[i * len(classes) + j], prediction["probabilities"][cls], abs_tol=1e-9)


async def test_v2_infer_refuses_a_tensor_of_the_wrong_width(gateway: httpx.AsyncClient, token: str) -> None:
    response = await gateway.post(
        "/v2/models/diabetes/infer",
        json={"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
        headers=bearer(token),
    )
    # The protocol's error form: 400 and {"error": "..."}, not V1's 422 list of problems.
    assert response.status_code == 400, response.text
    assert "input-0" in response.json()["error"]


async def test_csv_upload_answers_one_csv_row_per_input_row(
    gateway: httpx.AsyncClient, token: str, features: list[str]
) -> None:
    # Over 64 KiB, so the gateway streams the upload instead of reading it whole; and the
    # columns in an order of the file's own, which the header row resolves.
    rows = many_rows(3000)
    columns = list(reversed(features))
    upload = io.StringIO()
    writer = csv.writer(upload, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([row[c] for c in columns] for row in rows)
    data = upload.getvalue().encode()
    assert len(data) > 64 * 1024

    response = await gateway.post(
        "/v1/models/diabetes/predict-csv",
        files={"file": ("patients.csv", data, "text/csv")},
        headers={**bearer(token), "Accept": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    header, *answered = list(csv.reader(io.StringIO(response.text)))
    assert header == [*features, "label", "probability_0", "probability_1"]
    assert len(answered) == len(rows)

    expected = await v1_predictions(gateway, token, rows)
    labels = [int(line[len(features)]) for line in answered]
    assert labels == [p["label"] for p in expected]
    assert set(labels) == {0, 1}
    for line, prediction in zip(answered, expected, strict=True):
        assert math.isclose(float(line[-1]), prediction["probabilities"]["1"], abs_tol=1e-9)
    # The input columns come back too, in the model's order whatever the file's.
    assert [float(v) for v in answered[0][: len(features)]] == [float(rows[0][f]) for f in features]


async def test_csv_upload_without_accept_csv_answers_json(
    gateway: httpx.AsyncClient, token: str, features: list[str]
) -> None:
    data = ",".join(features) + "\n" + "\n".join(",".join(str(row[f]) for f in features) for row in ROWS) + "\n"
    response = await gateway.post(
        "/v1/models/diabetes/predict-csv", files={"file": ("patients.csv", data.encode())}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == await v1_predictions(gateway, token, ROWS)


async def test_csv_upload_with_a_bad_cell_names_its_line(
    gateway: httpx.AsyncClient, token: str, features: list[str]
) -> None:
    lines = [",".join(features), ",".join(str(ROWS[0][f]) for f in features)]
    lines.append(",".join("oops" if f == "mass" else str(ROWS[1][f]) for f in features))
    response = await gateway.post(
        "/v1/models/diabetes/predict-csv",
        files={"file": ("patients.csv", "\n".join(lines).encode())},
        headers=bearer(token),
    )
    assert response.status_code == 422, response.text
    assert "line 3" in response.text
    assert "mass" in response.text
