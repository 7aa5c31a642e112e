"""``POST /v1/models/{name}/predict-csv``: multipart CSV in, JSON or CSV out."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

import httpx
import pytest
from inference_service.settings import InferenceSettings
from modelgate_shared.testing import TokenSigner

from .conftest import FEATURES, HEALTHY_ROW, PIMA_ROW, serve

URL = "/v1/models/diabetes/predict-csv"


def csv_bytes(rows: list[dict[str, float]], columns: list[str] | None = None) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns or list(FEATURES))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def upload(data: bytes) -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("batch.csv", data, "text/csv")}


async def test_csv_upload_answers_json(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    # Columns in a different order than the model's features still line up by name.
    data = csv_bytes([PIMA_ROW, HEALTHY_ROW], list(reversed(FEATURES)))
    response = await client.post(URL, files=upload(data), headers=signer.auth_header("predict"))
    assert response.status_code == 200, response.text
    assert [p["label"] for p in response.json()["predictions"]] == [1, 0]


async def test_csv_upload_answers_csv_when_asked(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    response = await client.post(
        URL, files=upload(csv_bytes([PIMA_ROW, HEALTHY_ROW])), headers={**signer.auth_header(), "Accept": "text/csv"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == [*FEATURES, "label", "probability_0", "probability_1"]
    assert [r["label"] for r in rows] == ["1", "0"]
    assert rows[0]["mass"] == "33.6"
    assert abs(float(rows[0]["probability_0"]) + float(rows[0]["probability_1"]) - 1) < 1e-9


async def test_same_answer_as_json_predict(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    by_csv = await client.post(URL, files=upload(csv_bytes([PIMA_ROW])), headers=signer.auth_header())
    by_json = await client.post(
        "/v1/models/diabetes/predict", json={"instances": [PIMA_ROW]}, headers=signer.auth_header()
    )
    assert by_csv.json() == by_json.json()


HEADER = ",".join(FEATURES)
GOOD = "6,148,72,35,0,33.6,0.627,50"
BAD_FILES = [
    pytest.param(f"{HEADER}\n{GOOD}\n6,148,72,35,0,abc,0.627,50\n", "line 3, column 'mass': 'abc' is not", id="text"),
    pytest.param(f"{HEADER}\n{GOOD}\n6,148,72,35,0,,0.627,50\n", "line 3, column 'mass': empty value", id="empty-cell"),
    pytest.param(f"{HEADER}\n6,148,72,35,0,nan,0.627,50\n", "line 2, column 'mass': 'nan' is not a finite", id="nan"),
    pytest.param(f"{HEADER}\n6,148,72,35,0,inf,0.627,50\n", "'inf' is not a finite", id="inf"),
    pytest.param(f"{HEADER}\n{GOOD}\n{GOOD},9\n", "line 3: 9 fields, expected 8", id="extra-field"),
    pytest.param(f'{HEADER}\n{GOOD}\n"6,148\n', "line 3: malformed CSV", id="open-quote"),
    pytest.param(f"{HEADER.replace('plas,', '')}\n6,72,35,0,33.6,0.627,50\n", "missing feature columns ['plas']",
                 id="missing-column"),
    pytest.param(f"{HEADER},bmi\n{GOOD},1\n", "unknown columns ['bmi']", id="unknown-column"),
    pytest.param(f"{HEADER}\n", "no data rows", id="header-only"),
    pytest.param("", "file is empty", id="empty"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
async def test_bad_csv_is_422_naming_the_line(
    client: httpx.AsyncClient, signer: TokenSigner, text: str, message: str
) -> None:
    response = await client.post(URL, files=upload(text.encode()), headers=signer.auth_header())
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"][0]["msg"]


async def test_not_utf8_is_422(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    response = await client.post(
        URL, files=upload(b"\xff\xfe" + HEADER.encode("utf-16-le")), headers=signer.auth_header()
    )
    assert response.status_code == 422
    assert "UTF-8" in response.json()["detail"][0]["msg"]


async def test_missing_file_part_and_wrong_content_type(client: httpx.AsyncClient, signer: TokenSigner) -> None:
    other = await client.post(URL, files={"data": ("x.csv", b"a", "text/csv")}, headers=signer.auth_header())
    assert other.status_code == 422
    assert "'file' part" in other.json()["detail"][0]["msg"]
    raw = await client.post(URL, content=HEADER.encode(), headers={**signer.auth_header(), "Content-Type": "text/csv"})
    assert raw.status_code == 422
    assert "multipart/form-data" in raw.json()["detail"][0]["msg"]
    broken = await client.post(
        URL, content=b"garbage", headers={**signer.auth_header(), "Content-Type": "multipart/form-data; boundary=xyz"}
    )
    assert broken.status_code == 422


async def test_limits_are_413(make_settings: Callable[..., InferenceSettings], signer: TokenSigner) -> None:
    async with serve(make_settings(max_batch_rows=3, max_upload_bytes=4096)) as http:
        too_many = await http.post(URL, files=upload(csv_bytes([PIMA_ROW] * 4)), headers=signer.auth_header())
        too_big = await http.post(URL, files=upload(csv_bytes([PIMA_ROW] * 200)), headers=signer.auth_header())
        ok = await http.post(URL, files=upload(csv_bytes([PIMA_ROW] * 3)), headers=signer.auth_header())
    assert too_many.status_code == 413 and "limit of 3 rows" in too_many.json()["detail"]
    assert too_big.status_code == 413 and "4096 bytes" in too_big.json()["detail"]
    assert ok.status_code == 200
