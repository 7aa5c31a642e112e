"""The models the bring-your-own tests register: made from data that ships with scikit-learn
or is generated here, with the helpers that compare answers to the estimator's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

TREE = "sklearn.tree._tree.Tree"
HGB_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
CITIES = ["paris", "lyon", "nice"]


def applicants(rows: int = 300, seed: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    """A frame with string, integer, boolean and float columns, and a rule-based yes/no target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "city": rng.choice(CITIES, rows),
            "age": rng.integers(18, 80, rows),
            "member": rng.random(rows) > 0.5,
            "income": rng.normal(40_000, 12_000, rows).round(2),
        }
    )
    score = (frame["income"] - 40_000) / 12_000 + frame["member"] * 0.8 + (frame["city"] == "paris") * 0.5
    target = np.where(score + rng.normal(0, 0.5, rows) > 0.4, "yes", "no")
    return frame, target


def build_estimators() -> dict[str, tuple[Any, pd.DataFrame]]:
    """name -> (fitted estimator, rows to predict)."""
    frame, target = applicants()
    mixed = make_pipeline(
        ColumnTransformer(
            [("categories", OneHotEncoder(handle_unknown="error"), ["city", "member"]),
             ("numbers", StandardScaler(), ["age", "income"])]
        ),
        LogisticRegression(max_iter=500),
    ).fit(frame, target)  # fmt: skip
    diabetes = load_diabetes(as_frame=True)
    regressor = HistGradientBoostingRegressor(max_iter=30, random_state=0).fit(diabetes.data, diabetes.target)
    iris = load_iris(as_frame=True)
    species = np.asarray(iris.target_names)[iris.target]
    forest = RandomForestClassifier(n_estimators=15, random_state=0).fit(iris.data, species)
    return {
        "applicants": (mixed, frame.iloc[:25].reset_index(drop=True)),
        "progression": (regressor, diabetes.data.iloc[:25].reset_index(drop=True)),
        "iris": (forest, iris.data.iloc[::6].reset_index(drop=True)),
    }


def write_files(estimators: dict[str, tuple[Any, pd.DataFrame]], root: Path) -> Path:
    """Each estimator as ``<name>.skops`` and its rows as ``<name>-sample.csv``."""
    for name, (estimator, rows) in estimators.items():
        sio.dump(estimator, root / f"{name}.skops")
        rows.to_csv(root / f"{name}-sample.csv", index=False)
    return root


def records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: plain numbers, strings and booleans, null for missing
    (not ``to_json``, which rounds floats to 10 digits)."""
    return [{k: None if pd.isna(v) else v for k, v in row.items()} for row in rows.astype(object).to_dict("records")]


def expected(estimator: Any, rows: pd.DataFrame) -> dict[str, Any]:
    if hasattr(estimator, "classes_"):
        return {"labels": estimator.predict(rows).tolist(), "probabilities": estimator.predict_proba(rows)}
    return {"values": estimator.predict(rows)}


def check_v1(answer: dict[str, Any], estimator: Any, rows: pd.DataFrame) -> None:
    want = expected(estimator, rows)
    predictions = answer["predictions"]
    if "values" in want:
        assert np.array_equal([p["value"] for p in predictions], want["values"])
        return
    assert [p["label"] for p in predictions] == want["labels"]
    classes = [str(c) for c in estimator.classes_]
    got = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
    assert np.array_equal(got, want["probabilities"])
