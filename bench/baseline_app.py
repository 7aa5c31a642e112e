"""The ceiling: a bare single-process FastAPI app that predicts with the same model file.

No auth, no rate limit, no request log, one hop. It accepts the same V1 body as the
inference service so the same wrk load drives both, loads the model with the service's own
``load_registry`` and predicts the way inference does (``fast_linear``'s compiled
``predict_proba`` when it applies, else the estimator's), so the comparison measures what the
platform adds around the model, not two ways of computing it.
Started by the bench as ``python -m uvicorn bench.baseline_app:create_app --factory`` with
``BENCH_MODEL_DIR`` set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from .model_file import load

MODEL_DIR_ENV = "BENCH_MODEL_DIR"


class PredictRequest(BaseModel):
    instances: list[dict[str, float]] = Field(min_length=1)


def create_app(model_dir: Path | None = None) -> FastAPI:
    directory = model_dir or Path(os.environ[MODEL_DIR_ENV])
    model = load(directory)  # once, at start
    predict_proba = model.fast_proba or model.estimator.predict_proba
    keys = [str(c) for c in model.classes]
    app = FastAPI(title="bench baseline", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/models/diabetes/predict")
    async def predict(body: PredictRequest) -> dict[str, Any]:
        try:
            matrix = np.array([[row[f] for f in model.features] for row in body.instances], dtype=np.float64)
        except KeyError as exc:
            raise HTTPException(422, f"missing feature {exc}") from None
        probabilities = predict_proba(matrix)
        labels = [model.classes[i] for i in probabilities.argmax(axis=1).tolist()]
        return {
            "predictions": [
                {"label": label, "probabilities": dict(zip(keys, row, strict=True))}
                for label, row in zip(labels, probabilities.tolist(), strict=True)
            ]
        }

    return app
