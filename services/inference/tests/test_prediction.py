"""``predict``: one vectorised call, labels from probabilities, unscorable rows reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from inference_service.model_store import LoadedModel, ModelMetadata, load_registry
from inference_service.prediction import SMALL_BATCH_ROWS, Predictions, predict, v1_body, v1_json
from inference_service.validation import InputError


class FixedProbabilities:
    """Stands in for an estimator whose arithmetic overflowed on some rows."""

    classes_ = np.array(["no", "yes"])
    n_features_in_ = 1

    def __init__(self, probabilities: list[list[float]]) -> None:
        self.probabilities = np.array(probabilities)

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return self.probabilities[: len(matrix)]


def stub_model(probabilities: list[list[float]]) -> LoadedModel:
    raw = {"name": "stub", "version": "1", "task": "classification", "features": [{"name": "x"}],
           "classes": ["no", "yes"], "model_sha256": ""}  # fmt: skip
    return LoadedModel(ModelMetadata.from_json(raw, "stub"), FixedProbabilities(probabilities), Path("."))


def test_labels_are_the_most_probable_class() -> None:
    model = stub_model([[0.2, 0.8], [0.9, 0.1]])
    result = predict(model, np.zeros((2, 1)))
    assert result.labels == ["yes", "no"]
    assert v1_body(model, result)["predictions"][1] == {"label": "no", "probabilities": {"no": 0.9, "yes": 0.1}}


def test_rows_the_model_cannot_score_are_input_errors() -> None:
    model = stub_model([[0.2, 0.8], [np.nan, np.nan], [0.5, 0.5], [np.inf, 0.0]])
    with pytest.raises(InputError) as info:
        predict(model, np.zeros((4, 1)))
    assert [p.msg for p in info.value.problems] == [
        "row 1: values too extreme for the model to score",
        "row 3: values too extreme for the model to score",
    ]


def test_real_model_agrees_with_sklearn_predict(model_dir: Path) -> None:
    model = load_registry(model_dir).get("diabetes")
    assert model is not None
    rng = np.random.default_rng(1)
    matrix = rng.uniform(0, 200, size=(500, 8))
    result = predict(model, matrix)
    assert result.labels == model.estimator.predict(matrix).tolist()
    assert np.allclose(result.probabilities, model.estimator.predict_proba(matrix))


@pytest.mark.parametrize("classes", [(0, 1), ("no", "yes", "maybe"), (True, False)])
@pytest.mark.parametrize("rows", [1, 2, SMALL_BATCH_ROWS, SMALL_BATCH_ROWS + 1, 257])
def test_v1_json_is_the_v1_body_encoded(classes: tuple[object, ...], rows: int) -> None:
    rng = np.random.default_rng(rows)
    probabilities = rng.dirichlet(np.ones(len(classes)), size=rows)
    # Extremes of float formatting: exponents, exact zero and one.
    probabilities[0, 0] = 1e-300
    probabilities[-1] = np.eye(len(classes))[-1]
    index = probabilities.argmax(axis=1)
    result = Predictions(
        labels=[classes[i] for i in index.tolist()], probabilities=probabilities, classes=classes, label_index=index
    )
    raw = {"name": "stub", "version": "7", "task": "classification", "features": [{"name": "x"}],
           "classes": list(classes), "model_sha256": ""}  # fmt: skip
    model = LoadedModel(ModelMetadata.from_json(raw, "stub"), FixedProbabilities([[0.5] * len(classes)]), Path("."))
    encoded = v1_json(model, result)
    assert encoded == orjson.dumps(v1_body(model, result))
    assert orjson.loads(encoded)["predictions"][-1]["probabilities"][str(classes[-1])] == 1.0
