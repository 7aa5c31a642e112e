"""Bring your own model: fitted estimators registered with ``python -m inference_service models
add``, served through V1 JSON, CSV and V2 (tritonclient against real uvicorn), and answering
exactly what the estimator itself answers on the same rows."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
import tritonclient.http as triton
from inference_service.__main__ import main
from inference_service.model_store import METADATA_FILE, MODEL_FILE, load_registry, write_alias
from inference_service.registration import add_model
from inference_service.settings import InferenceSettings
from modelgate_shared.testing import TokenSigner
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC
from tritonclient.utils import InferenceServerException

from .byo_models import CITIES, HGB_PREDICTOR, TREE, applicants, check_v1, records
from .conftest import serve, uvicorn_server


@pytest.fixture(scope="module")
def byo_dir(model_dir: Path, files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Today's diabetes model plus the three registered through the CLI."""
    root = tmp_path_factory.mktemp("byo-models")
    shutil.copytree(model_dir / "diabetes", root / "diabetes")
    add = ["models", "add", "--model-dir", str(root)]
    assert (
        main(
            [
                *add,
                str(files / "applicants.skops"),
                "--name",
                "applicants",
                "--sample",
                str(files / "applicants-sample.csv"),
                "--description",
                "loan applicants",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                *add,
                str(files / "progression.skops"),
                "--name",
                "progression",
                "--trust",
                HGB_PREDICTOR,
                "--sample",
                str(files / "progression-sample.csv"),
            ]
        )
        == 0
    )
    assert main([*add, str(files / "iris.skops"), "--name", "iris", "--trust", TREE]) == 0  # fmt: skip
    return root


@pytest.fixture
async def byo(byo_dir: Path, make_settings: Callable[..., InferenceSettings]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(model_dir=byo_dir)) as http:
        yield http


# --- registration ---------------------------------------------------------------------------


def test_schemas_are_derived_from_the_estimators(byo_dir: Path) -> None:
    registry = load_registry(byo_dir)
    applicants_model = registry.get("applicants")
    assert applicants_model is not None
    schema = {c["name"]: c for c in applicants_model.schema.to_json()}
    assert schema["city"] == {"name": "city", "dtype": "category", "categories": sorted(CITIES),
                              "unknown_categories": "error", "nullable": False}  # fmt: skip
    assert schema["member"]["dtype"] == "boolean"
    assert schema["age"]["dtype"] == "integer" and schema["income"]["dtype"] == "number"
    assert applicants_model.classes == ("no", "yes") and applicants_model.metadata.probabilities
    meta = applicants_model.metadata.raw
    assert meta["description"] == "loan applicants" and meta["trusted_types"] == []
    assert meta["source"]["format"] == "skops" and len(meta["model_sha256"]) == 64

    progression = registry.get("progression")
    assert progression is not None and progression.metadata.task == "regression"
    # Tried on the model: gradient boosting takes missing values in every column.
    assert all(c.nullable and c.dtype == "number" for c in progression.schema.columns)
    assert progression.metadata.trusted_types == (HGB_PREDICTOR,)

    iris = registry.get("iris")
    assert iris is not None and iris.classes == ("setosa", "versicolor", "virginica")
    assert iris.features[0] == "sepal length (cm)" and iris.metadata.trusted_types == (TREE,)
    # Today's model is untouched, and still on its bit-identical fast path.
    diabetes = registry.get("diabetes")
    assert diabetes is not None and diabetes.fast_proba is not None


def test_the_command_line_lists_and_removes(byo_dir: Path, files: Path, tmp_path: Path) -> None:
    root = tmp_path / "models"
    shutil.copytree(byo_dir / "iris", root / "iris")
    command = [sys.executable, "-m", "inference_service", "models"]
    added = subprocess.run(
        [*command, "add", str(files / "iris.skops"), "--name", "iris", "--trust", TREE, "--no-default",
         "--model-dir", str(root)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "added iris version 2 (classification" in added.stdout
    listed = subprocess.run([*command, "list", "--model-dir", str(root)], capture_output=True, text=True, check=False)
    assert listed.stdout.splitlines() == [
        "iris\t1\tclassification\t4 columns\t@default",
        "iris\t2\tclassification\t4 columns",
    ]
    assert load_registry(root).get("iris").version == "1"  # --no-default kept the default
    again = subprocess.run(
        [*command, "add", str(files / "iris.skops"), "--name", "iris", "--trust", TREE, "--version", "2",
         "--model-dir", str(root)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert again.returncode == 1 and "iris/2 already exists" in again.stderr
    assert main(["models", "add", str(files / "iris.skops"), "--name", "iris", "--trust", TREE, "--version", "3",
                 "--no-default", "--restricted", "--model-dir", str(root)]) == 0  # fmt: skip
    assert main(["models", "alias", "iris", "staging", "3", "--model-dir", str(root)]) == 0
    assert main(["models", "alias", "iris", "staging", "9", "--model-dir", str(root)]) == 1
    listed = subprocess.run([*command, "list", "--model-dir", str(root)], capture_output=True, text=True, check=False)
    assert listed.stdout.splitlines()[2] == "iris\t3\tclassification\t4 columns\t@staging requires predict:iris"
    assert main(["models", "remove", "iris", "--version", "3", "--model-dir", str(root)]) == 1  # @staging
    (root / "iris" / "@staging").unlink()
    assert main(["models", "remove", "iris", "--version", "3", "--model-dir", str(root)]) == 0
    assert load_registry(root).access("iris").restricted_versions == frozenset()
    refused = subprocess.run(
        [*command, "remove", "iris", "--version", "1", "--model-dir", str(root)], capture_output=True, text=True
    )
    assert refused.returncode == 1 and "@default points at" in refused.stderr
    assert main(["models", "remove", "iris", "--version", "2", "--model-dir", str(root)]) == 0
    assert load_registry(root).versions("iris") == ["1"]
    assert main(["models", "remove", "iris", "--version", "1", "--model-dir", str(root)]) == 0
    assert not (root / "iris").exists() and [p.name for p in root.iterdir()] == []


def refused(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> str:
    assert main(["models", "add", "--model-dir", str(root), *args]) == 1
    assert not root.exists() or not any(p.name[0].isalnum() for p in root.rglob("*")), "something was written"
    return capsys.readouterr().err


def test_a_pickle_needs_trust_pickle_and_is_served_as_skops(
    estimators: dict[str, tuple[Any, pd.DataFrame]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pickled = tmp_path / "model.joblib"
    joblib.dump(estimators["applicants"][0], pickled)
    root = tmp_path / "models"
    message = refused(capsys, root, str(pickled), "--name", "applicants")
    assert "is not a skops file" in message and "--trust-pickle" in message and "runs whatever code" in message
    assert (
        main(["models", "add", "--model-dir", str(root), str(pickled), "--name", "applicants", "--trust-pickle"]) == 0
    )
    served = root / "applicants" / "1"
    assert (served / MODEL_FILE).read_bytes()[:4] == b"PK\x03\x04"  # a skops zip, not a pickle
    assert json.loads((served / METADATA_FILE).read_text())["source"]["format"] == "pickle"


def test_untrusted_types_are_listed_and_refused(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = refused(capsys, tmp_path / "models", str(files / "iris.skops"), "--name", "iris")
    assert TREE in message and "--trust TYPE" in message
    evil = tmp_path / "evil.skops"
    sio.dump(FunctionTransformer(print), evil)
    message = refused(capsys, tmp_path / "models", str(evil), "--name", "evil", "--trust", TREE)
    assert "builtins.print" in message


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_file_is_refused(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    data = (files / "applicants.skops").read_bytes()
    broken = tmp_path / "broken.skops"
    broken.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"PK\x03\x04" + b"\x00" * 100)
    message = refused(capsys, tmp_path / "models", str(broken), "--name", "broken")
    assert "not a readable skops file" in message


def test_a_sample_the_model_cannot_predict_is_refused(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("city,age,member,income\nberlin,30,True,1000.5\n")
    message = refused(
        capsys, tmp_path / "models", str(files / "applicants.skops"), "--name", "a", "--sample", str(sample)
    )
    assert "cannot predict the sample" in message and "unknown category 'berlin'" in message


# --- serving --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["applicants", "progression", "iris"])
async def test_v1_json_and_csv_answer_what_the_estimator_answers(
    byo: httpx.AsyncClient, signer: TokenSigner, estimators: dict[str, tuple[Any, pd.DataFrame]], name: str
) -> None:
    estimator, rows = estimators[name]
    headers = signer.auth_header("predict models:read")
    answer = await byo.post(f"/v1/models/{name}/predict", json={"instances": records(rows)}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == "1"
    check_v1(answer.json(), estimator, rows)
    positional = await byo.post(
        f"/v1/models/{name}/predict", json={"instances": [list(r.values()) for r in records(rows)]}, headers=headers
    )
    assert positional.json() == answer.json()

    upload = {"file": ("rows.csv", rows.to_csv(index=False).encode(), "text/csv")}
    as_json = await byo.post(f"/v1/models/{name}/predict-csv", files=upload, headers=headers)
    assert as_json.status_code == 200, as_json.text
    check_v1(as_json.json(), estimator, rows)
    as_csv = await byo.post(f"/v1/models/{name}/predict-csv", files=upload, headers={**headers, "Accept": "text/csv"})
    table = pd.read_csv(io.StringIO(as_csv.text))
    if hasattr(estimator, "classes_"):
        assert table["label"].tolist() == estimator.predict(rows).tolist()
        assert [c for c in table.columns if c.startswith("probability_")] == [
            f"probability_{c}" for c in estimator.classes_
        ]
    else:
        assert np.array_equal(table["value"].to_numpy(), estimator.predict(rows))

    detail = (await byo.get(f"/v1/models/{name}", headers=headers)).json()
    assert detail["version"] == "1" and detail["aliases"] == {"default": "1"}
    assert [c["name"] for c in detail["schema"]] == list(rows.columns)


async def test_the_default_model_answers_as_before(byo: httpx.AsyncClient, signer: TokenSigner) -> None:
    row = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}
    answer = await byo.post("/v1/models/diabetes/predict", json={"instances": [row]}, headers=signer.auth_header())
    (prediction,) = answer.json()["predictions"]
    assert set(prediction) == {"label", "probabilities"} and set(prediction["probabilities"]) == {"0", "1"}


async def test_missing_values_reach_a_model_that_takes_them(
    byo: httpx.AsyncClient, signer: TokenSigner, estimators: dict[str, tuple[Any, pd.DataFrame]]
) -> None:
    estimator, rows = estimators["progression"]
    holey = rows.iloc[:3].copy()
    holey.loc[1, "bmi"] = np.nan
    instances = records(holey)
    assert instances[1]["bmi"] is None
    answer = await byo.post(
        "/v1/models/progression/predict", json={"instances": instances}, headers=signer.auth_header()
    )
    assert answer.status_code == 200, answer.text
    assert np.array_equal([p["value"] for p in answer.json()["predictions"]], estimator.predict(holey))


BAD_ROWS = [
    ({"age": "thirty"}, ["body", "instances", 0, "age"], "row 0, feature 'age': must be a number, got str 'thirty'"),
    ({"age": 30.5}, ["body", "instances", 0, "age"], "must be an integer"),
    ({"city": "berlin"}, ["body", "instances", 0, "city"], "unknown category 'berlin' (the model knows 'lyon',"),
    ({"city": 3}, ["body", "instances", 0, "city"], "must be a string, got int 3"),
    ({"member": "yes"}, ["body", "instances", 0, "member"], "must be true or false"),
    ({"income": None}, ["body", "instances", 0, "income"], "a value is required"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "loc", "message"), BAD_ROWS, ids=[str(c) for c, _, _ in BAD_ROWS])
async def test_bad_values_name_row_and_column(
    byo: httpx.AsyncClient, signer: TokenSigner, change: dict[str, Any], loc: list[Any], message: str
) -> None:
    good = {"city": "lyon", "age": 41, "member": False, "income": 39000.0}
    response = await byo.post(
        "/v1/models/applicants/predict", json={"instances": [{**good, **change}]}, headers=signer.auth_header()
    )
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == loc and message in problem["msg"]


async def test_missing_columns_and_bad_csv_cells(byo: httpx.AsyncClient, signer: TokenSigner) -> None:
    headers = signer.auth_header()
    missing = await byo.post(
        "/v1/models/applicants/predict",
        json={"instances": [{"city": "lyon", "age": 41, "member": False}]},
        headers=headers,
    )
    assert missing.status_code == 422 and "row 0: missing feature 'income'" in missing.json()["detail"][0]["msg"]
    csv_text = "city,age,member,income\nlyon,41,false,1.5\nrome,x,maybe,\n"
    response = await byo.post(
        "/v1/models/applicants/predict-csv", files={"file": ("r.csv", csv_text.encode(), "text/csv")}, headers=headers
    )
    assert response.status_code == 422
    messages = [p["msg"] for p in response.json()["detail"]]
    assert "line 3, column 'age': 'x' is not a number" in messages
    assert "line 3, column 'member': 'maybe' is not true or false" in messages
    assert any(m.startswith("line 3, column 'city': unknown category 'rome'") for m in messages)
    assert "line 3, column 'income': a value is required (the model cannot take missing values)" in messages


async def test_v2_per_column_json_and_errors(
    byo: httpx.AsyncClient, signer: TokenSigner, estimators: dict[str, tuple[Any, pd.DataFrame]]
) -> None:
    estimator, rows = estimators["applicants"]
    headers = signer.auth_header()
    metadata = (await byo.get("/v2/models/applicants", headers=headers)).json()
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == [
        ("city", "BYTES"), ("age", "INT64"), ("member", "BOOL"), ("income", "FP64")
    ]  # fmt: skip
    datatypes = {i["name"]: i["datatype"] for i in metadata["inputs"]}
    inputs = [
        {"name": c, "datatype": datatypes[c], "shape": [len(rows), 1], "data": rows[c].tolist()} for c in rows.columns
    ]
    answer = await byo.post("/v2/models/applicants/infer", json={"inputs": inputs}, headers=headers)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    assert outputs["label"]["data"] == estimator.predict(rows).tolist()
    assert np.array_equal(np.reshape(outputs["probabilities"]["data"], (-1, 2)), estimator.predict_proba(rows))

    wrong = [{**i, "datatype": "FP64", "data": [1.0] * len(rows)} if i["name"] == "city" else i for i in inputs]
    response = await byo.post("/v2/models/applicants/infer", json={"inputs": wrong}, headers=headers)
    assert response.status_code == 400
    assert "input 'city', row 0: must be a string, got float 1.0" in response.json()["error"]


def test_a_model_error_on_client_data_is_a_422(byo_dir: Path, make_settings: Callable[..., InferenceSettings]) -> None:
    from inference_service.prediction import predict
    from inference_service.validation import InputError

    model = load_registry(byo_dir).get("applicants")
    assert model is not None
    # A frame that passed no schema check: what scikit-learn refuses is reported, not raised as a 500.
    with pytest.raises(InputError, match="the model cannot score this input"):
        predict(model, pd.DataFrame({"city": ["lyon"], "age": [1], "member": [True], "income": ["lots"]}))


# --- V2 through a standard client, against real uvicorn -----------------------------------------


@pytest.fixture(scope="module", params=["cli", "http"], ids=["registered-by-cli", "uploaded-over-http"])
def byo_server(
    request: pytest.FixtureRequest,
    byo_dir: Path,
    model_dir: Path,
    files: Path,
    jwks_path: Path,
    signer: TokenSigner,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The three models in a real uvicorn server: registered with the command line before it
    started, or uploaded to it over HTTP while it runs."""
    log = tmp_path_factory.mktemp("byo-server") / "inference.log"
    if request.param == "cli":
        with uvicorn_server(byo_dir, jwks_path, log) as url:
            yield url
        return
    root = tmp_path_factory.mktemp("uploaded-models")
    shutil.copytree(model_dir / "diabetes", root / "diabetes")
    trust = {"applicants": [], "progression": [HGB_PREDICTOR], "iris": [TREE]}
    with uvicorn_server(root, jwks_path, log) as url:
        for name, types in trust.items():
            answer = httpx.post(
                f"http://{url}/v1/models/{name}/versions",
                files={
                    "file": (f"{name}.skops", (files / f"{name}.skops").read_bytes()),
                    "sample": ("sample.csv", (files / f"{name}-sample.csv").read_bytes()),
                    "metadata": (None, json.dumps({"trust": types})),
                },
                headers=signer.auth_header("admin"),
                timeout=60,
            )
            assert answer.status_code == 201, answer.text
        yield url


def tensor(name: str, values: np.ndarray, datatype: str, binary: bool) -> triton.InferInput:
    column = values.reshape(-1, 1)
    item = triton.InferInput(name, list(column.shape), datatype)
    item.set_data_from_numpy(column, binary_data=binary)
    return item


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_per_column_tensors(
    byo_server: str, signer: TokenSigner, estimators: dict[str, tuple[Any, pd.DataFrame]], binary: bool
) -> None:
    headers = {"Authorization": f"Bearer {signer.token('predict models:read')}"}
    client = triton.InferenceServerClient(url=byo_server)
    try:
        estimator, rows = estimators["applicants"]
        inputs = [
            tensor("city", rows["city"].to_numpy(dtype=object), "BYTES", binary),
            tensor("age", rows["age"].to_numpy(dtype=np.int64), "INT64", binary),
            tensor("member", rows["member"].to_numpy(dtype=bool), "BOOL", binary),
            tensor("income", rows["income"].to_numpy(dtype=np.float64), "FP64", binary),
        ]
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
        result = client.infer("applicants", inputs, outputs=outputs, headers=headers)
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").ravel()]
        assert labels == estimator.predict(rows).tolist()
        assert np.array_equal(result.as_numpy("probabilities"), estimator.predict_proba(rows))

        # All-numeric models also take today's single FP tensor of [rows, features].
        forest, flowers = estimators["iris"]
        matrix = triton.InferInput("input", list(flowers.shape), "FP64")
        matrix.set_data_from_numpy(flowers.to_numpy(dtype=np.float64), binary_data=binary)
        species = client.infer("iris", [matrix], headers=headers)
        assert [v.decode() for v in species.as_numpy("label").ravel()] == forest.predict(flowers).tolist()
        assert np.array_equal(species.as_numpy("probabilities"), forest.predict_proba(flowers))

        regressor, patients = estimators["progression"]
        columns = [tensor(c, patients[c].to_numpy(dtype=np.float64), "FP64", binary) for c in patients.columns]
        value = client.infer("progression", columns, headers=headers)
        assert np.array_equal(value.as_numpy("value"), regressor.predict(patients))
        assert client.get_model_metadata("progression", headers=headers)["outputs"] == [
            {"name": "value", "datatype": "FP64", "shape": [-1]}
        ]

        bad = [*inputs[:2], tensor("member", np.array(["x"] * len(rows), dtype=object), "BYTES", binary), inputs[3]]
        with pytest.raises(InferenceServerException) as refused_input:
            client.infer("applicants", bad, headers=headers)
        assert refused_input.value.status() == "400"
        assert "input 'member', row 0: must be true or false" in refused_input.value.message()
    finally:
        client.close()


async def test_a_classifier_without_probabilities_and_an_alias(
    tmp_path: Path, signer: TokenSigner, make_settings: Callable[..., InferenceSettings]
) -> None:
    iris = load_iris(as_frame=True)
    svc = make_pipeline(StandardScaler(), LinearSVC()).fit(iris.data, np.asarray(iris.target_names)[iris.target])
    sio.dump(svc, tmp_path / "svc.skops")
    root = tmp_path / "models"
    add_model(root, tmp_path / "svc.skops", name="flowers")
    add_model(root, tmp_path / "svc.skops", name="flowers")
    write_alias(root, "flowers", "production", "1")
    rows = iris.data.iloc[::10].reset_index(drop=True)
    headers = signer.auth_header()
    async with serve(make_settings(model_dir=root)) as http:
        latest = await http.post("/v1/models/flowers/predict", json={"instances": records(rows)}, headers=headers)
        assert latest.json()["version"] == "2"
        assert latest.json()["predictions"] == [{"label": label} for label in svc.predict(rows)]
        pinned = await http.post(
            "/v1/models/flowers/versions/production/predict", json={"instances": records(rows)}, headers=headers
        )
        assert pinned.json()["version"] == "1"
        v2 = await http.get("/v2/models/flowers", headers=headers)
        assert [o["name"] for o in v2.json()["outputs"]] == ["label"]


def test_encoders_behind_an_imputer_give_categories_that_may_be_missing() -> None:
    from inference_service.registration import derive_schema
    from sklearn.impute import SimpleImputer

    frame, target = applicants(rows=80)
    frame.loc[3, "city"] = None
    pipeline = make_pipeline(
        ColumnTransformer(
            [("city", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
              ["city"])],
            remainder="passthrough",
        ),
        LogisticRegression(max_iter=500),
    ).fit(frame.astype({"member": int}), target)  # fmt: skip
    city, *others = derive_schema(pipeline, None).columns
    assert (city.dtype, city.categories, city.unknown_categories, city.nullable) == (
        "category", tuple(sorted(CITIES)), "ignore", True
    )  # fmt: skip
    # Without a sample: numbers, not nullable (logistic regression refuses NaN).
    assert [(c.name, c.dtype, c.nullable) for c in others] == [
        ("age", "number", False), ("member", "number", False), ("income", "number", False)
    ]  # fmt: skip


async def test_hostile_bytes_tensors_are_refused(byo: httpx.AsyncClient, signer: TokenSigner) -> None:
    header = {
        "inputs": [
            {"name": "city", "datatype": "BYTES", "shape": [2, 1], "parameters": {"binary_data_size": 12}},
            {"name": "age", "datatype": "INT64", "shape": [2, 1], "data": [1, 2]},
            {"name": "member", "datatype": "BOOL", "shape": [2, 1], "data": [True, False]},
            {"name": "income", "datatype": "FP64", "shape": [2, 1], "data": [1.0, 2.0]},
        ]
    }
    head = json.dumps(header).encode()
    # The first element claims 1000 bytes; only 8 follow.
    body = head + (1000).to_bytes(4, "little") + b"lyonlyon"
    response = await byo.post(
        "/v2/models/applicants/infer",
        content=body,
        headers={**signer.auth_header(), "Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 400
    assert "input 'city': BYTES element of 1000 bytes runs past its data" in response.json()["error"]
    bad_utf8 = head + (4).to_bytes(4, "little") + b"\xff\xfe\xfd\xfc" + (0).to_bytes(4, "little")
    response = await byo.post(
        "/v2/models/applicants/infer",
        content=bad_utf8,
        headers={**signer.auth_header(), "Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 400 and "UTF-8" in response.json()["error"]
