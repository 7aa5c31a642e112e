"""The bring-your-own models: their request bodies, their registration beside the default
model, and the in-process path answering what the estimators themselves answer."""

import json
from pathlib import Path

import numpy as np
import orjson
import pytest
from inference_service.model_store import load_registry

from bench import byo_models, model_file, runner
from bench.byo_models import MODELS
from bench.cli import parse_args
from bench.report import InProcess, text_table

MIXED, FOREST = MODELS["byo_mixed"], MODELS["byo_forest"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Registered first, then the default model trained by the launcher's own step, as in a run."""
    root = tmp_path_factory.mktemp("byo") / "models"
    byo_models.register(root, list(MODELS.values()))
    runner._train_model(root)
    return root


def test_bodies_are_the_same_bytes_every_run_in_client_types() -> None:
    body = byo_models.v1_predict(MIXED, 10_000)
    assert body == byo_models.v1_predict(MIXED, 10_000)
    rows = json.loads(body)["instances"]
    assert len(rows) == 10_000 and rows == byo_models.instances(MIXED, 10_000)
    assert {tuple((k, type(v)) for k, v in row.items()) for row in rows} == {
        (("city", str), ("age", int), ("member", bool), ("income", float))
    }
    # Only categories the encoder knows (it refuses others): every request is a 200.
    assert {row["city"] for row in rows} == set(byo_models.CITIES)
    (flower,) = json.loads(byo_models.v1_predict(FOREST, 1))["instances"]
    assert list(flower) == ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    assert all(type(v) is float for v in flower.values())


def test_registered_beside_the_default_model(model_dir: Path) -> None:
    registry = load_registry(model_dir)
    assert registry.names() == ["applicants", "diabetes", "iris"]
    iris = registry.get("iris")
    assert iris is not None and iris.metadata.trusted_types == (byo_models.TREE,)
    assert iris.classes == ("setosa", "versicolor", "virginica")
    applicants = registry.get("applicants")
    assert applicants is not None
    # Types read from the sample: a typed frame, not a float matrix.
    assert [c.dtype for c in applicants.schema.columns] == ["category", "integer", "boolean", "number"]
    assert model_file.load(model_dir).fast_proba is not None  # the default model, as the baseline loads it


@pytest.mark.parametrize("spec", list(MODELS.values()), ids=list(MODELS))
@pytest.mark.parametrize("count", [1, 500])
def test_in_process_paths_answer_what_the_estimator_answers(
    model_dir: Path, spec: byo_models.ByoModel, count: int
) -> None:
    estimator, _ = spec.build()  # deterministic: the same fit as the registered one
    frame = spec.rows(count)
    model = model_file.load(model_dir, spec.name)
    body = byo_models.v1_predict(spec, count)
    result = byo_models.parse_and_predict(model, json.loads(body)["instances"])
    assert result.labels == estimator.predict(frame).tolist()
    assert result.probabilities is not None
    assert np.array_equal(result.probabilities, estimator.predict_proba(frame))
    answer = orjson.loads(byo_models.body_to_answer(model, body))
    assert (answer["model"], answer["version"]) == (spec.name, "1")
    assert [p["label"] for p in answer["predictions"]] == result.labels


def test_byo_scenarios_are_selectable_and_reported_apart_from_the_batch_ceiling() -> None:
    options, _ = parse_args(["--only", "byo_forest,byo_mixed,batch"])
    assert options.scenarios == ("batch", "byo_mixed", "byo_forest")
    ceiling = InProcess(rows_per_call=10_000, calls=10, seconds=1.0, key="byo_mixed_parse_predict", label="x 10k")
    assert text_table([], [ceiling]).splitlines()[2].startswith("x 10k")
    assert ceiling.to_dict()["key"] == "byo_mixed_parse_predict"
    assert InProcess(rows_per_call=100, calls=1, seconds=1.0).key == "batch"
