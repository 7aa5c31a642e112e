"""Bring-your-own models for the ``byo_*`` scenarios: fitted here from data made in code or
shipped with scikit-learn, saved with skops and registered with the inference service's own
``registration.add_model``, the path ``python -m inference_service models add`` takes.

They go into the stack's model directory before the stack starts, beside the default Pima
model the launcher trains there (``train --if-missing`` only looks for its own name). The
rows sent are generated from a seed, so every run sends the same bytes, and the in-process
measurement predicts exactly the rows the gateway is sent.

The models are the ones ``services/inference/tests/test_bring_your_own.py`` builds (same data,
same estimators); the bench keeps its own copy because it must not import from tests.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from inference_service.model_store import LoadedModel
from inference_service.prediction import Predictions, predict
from inference_service.registration import add_model
from inference_service.routes.v1 import predict_json_body
from inference_service.settings import InferenceSettings
from inference_service.typed_input import records_input
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from . import payloads

# skops does not trust a fitted tree's arrays by default; add_model refuses it unless named.
TREE = "sklearn.tree._tree.Tree"
CITIES = ("paris", "lyon", "nice")
FOREST_TREES = 15
# The inference service's own row limit per request: the in-process path parses with it too.
MAX_ROWS: int = InferenceSettings.model_fields["max_batch_rows"].default
SAMPLE_ROWS = 25
# Training and request rows come from different seeds: requests are not the training rows.
TRAINING_SEED, REQUEST_SEED = 5, 11
# Roughly iris' ranges per column (cm), so request rows look like real flowers.
_IRIS_RANGES = ((4.3, 7.9), (2.0, 4.4), (1.0, 6.9), (0.1, 2.5))


def applicants(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A frame with string, integer, boolean and float columns, and a rule-based yes/no target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "city": rng.choice(list(CITIES), rows),
            "age": rng.integers(18, 80, rows),
            "member": rng.random(rows) > 0.5,
            "income": rng.normal(40_000, 12_000, rows).round(2),
        }
    )
    score = (frame["income"] - 40_000) / 12_000 + frame["member"] * 0.8 + (frame["city"] == "paris") * 0.5
    target = np.where(score + rng.normal(0, 0.5, rows) > 0.4, "yes", "no")
    return frame, target


def build_mixed() -> tuple[Any, pd.DataFrame | None]:
    """One-hot city and member, scaled age and income, logistic regression; and a sample CSV
    frame, from which registration reads the column types (age an integer, not a float)."""
    frame, target = applicants(300, TRAINING_SEED)
    pipeline = make_pipeline(
        ColumnTransformer(
            [("categories", OneHotEncoder(handle_unknown="error"), ["city", "member"]),
             ("numbers", StandardScaler(), ["age", "income"])]
        ),
        LogisticRegression(max_iter=500),
    ).fit(frame, target)  # fmt: skip
    return pipeline, frame.iloc[:SAMPLE_ROWS]


def build_forest() -> tuple[Any, pd.DataFrame | None]:
    """A 3-class random forest on iris with the species names as labels (no sample: all columns
    are numbers)."""
    iris = load_iris(as_frame=True)
    species = np.asarray(iris.target_names)[iris.target]
    return RandomForestClassifier(n_estimators=FOREST_TREES, random_state=0).fit(iris.data, species), None


def mixed_rows(count: int) -> pd.DataFrame:
    return applicants(count, REQUEST_SEED)[0]


def forest_rows(count: int) -> pd.DataFrame:
    rng = np.random.default_rng(REQUEST_SEED)
    names = load_iris().feature_names
    return pd.DataFrame(
        {name: rng.uniform(low, high, count).round(1) for name, (low, high) in zip(names, _IRIS_RANGES, strict=True)}
    )


@dataclass(frozen=True)
class ByoModel:
    scenario: str  # the --only name
    name: str  # the registered model name
    label: str  # what the table shows
    description: str
    build: Callable[[], tuple[Any, pd.DataFrame | None]]
    rows: Callable[[int], pd.DataFrame]
    trust: tuple[str, ...] = ()

    @property
    def predict_path(self) -> str:
        return f"/v1/models/{self.name}/predict"


MODELS = {
    m.scenario: m
    for m in (
        ByoModel(
            "byo_mixed",
            "applicants",
            "byo mixed",
            "ColumnTransformer(OneHotEncoder city+member, StandardScaler age+income) + LogisticRegression, "
            "string/integer/boolean/float columns, 300 generated training rows",
            build_mixed,
            mixed_rows,
        ),
        ByoModel(
            "byo_forest",
            "iris",
            "byo forest",
            f"RandomForestClassifier({FOREST_TREES} trees) on scikit-learn's iris, 3 string labels, 4 float columns",
            build_forest,
            forest_rows,
            trust=(TREE,),
        ),
    )
}


def instances(model: ByoModel, count: int) -> list[dict[str, Any]]:
    """Rows as a client sends them: plain str, int, bool and float (``tolist`` per column turns
    numpy scalars into Python ones; ``to_json`` would round floats)."""
    frame = model.rows(count)
    columns = {name: frame[name].tolist() for name in frame.columns}
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def v1_predict(model: ByoModel, count: int) -> bytes:
    return payloads.v1_records(instances(model, count))


def files(model: ByoModel) -> tuple[bytes, bytes | None]:
    """The fitted model as skops bytes and its sample as CSV bytes (None without a sample):
    what registration reads from disk and what an upload sends."""
    estimator, sample = model.build()
    return sio.dumps(estimator), None if sample is None else sample.to_csv(index=False).encode()


def register(model_dir: Path, chosen: Sequence[ByoModel]) -> list[LoadedModel]:
    """Fit, skops-save and ``add_model`` each model into ``model_dir`` (created if missing)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    published = []
    with tempfile.TemporaryDirectory(prefix="bench-byo-") as tmp:
        for model in chosen:
            skops_file, sample_csv = files(model)
            path = Path(tmp) / f"{model.name}.skops"
            path.write_bytes(skops_file)
            sample_path = None
            if sample_csv is not None:
                sample_path = Path(tmp) / f"{model.name}-sample.csv"
                sample_path.write_bytes(sample_csv)
            published.append(
                add_model(
                    model_dir, path, name=model.name, sample=sample_path, description=model.description,
                    trust=model.trust,
                )
            )  # fmt: skip
    return published


# -- the in-process paths the scenarios time ------------------------------------------------------


def parse_and_predict(model: LoadedModel, rows: list[dict[str, Any]]) -> Predictions:
    """What inference does with decoded JSON records: type-check them into the model's input
    (``records_input``) and predict. No JSON, no HTTP."""
    return predict(model, records_input(model.schema, rows, MAX_ROWS))


def body_to_answer(model: LoadedModel, body: bytes) -> bytes:
    """The whole CPU-bound part of a V1 request in inference, request bytes to answer bytes
    (the function the route runs): JSON decode, the above, and the JSON encode."""
    return predict_json_body(model, body, MAX_ROWS)
