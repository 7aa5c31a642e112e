"""Pydantic shapes for the OpenAPI docs. Request bodies are parsed by hand (orjson plus
our own validation, see ``validation.py``) for speed and row-level errors; these models
document them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .model_store import LoadedModel

PIMA_EXAMPLE = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}


class PredictRequest(BaseModel):
    instances: list[dict[str, float] | list[float]] = Field(
        description="Rows: objects keyed by feature name, or lists of values in feature order.",
        examples=[[PIMA_EXAMPLE]],
    )


class Prediction(BaseModel):
    label: Any
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[Prediction]


class ModelSummary(BaseModel):
    name: str
    default_version: str
    versions: list[str]
    task: str
    features: list[str]
    classes: list[Any]
    metrics: dict[str, Any]


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    version: str
    input_schema: dict[str, Any]
    metadata: dict[str, Any]


def record_schema(model: LoadedModel) -> dict[str, Any]:
    """JSON Schema of one ``instances`` record for this model."""
    return {
        "type": "object",
        "properties": {f: {"type": "number"} for f in model.features},
        "required": list(model.features),
        "additionalProperties": False,
        "description": f"or a list of {len(model.features)} numbers in the order {', '.join(model.features)}",
    }


def json_request_body(schema: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema.model_json_schema()}}}}


CSV_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            }
        },
    }
}
