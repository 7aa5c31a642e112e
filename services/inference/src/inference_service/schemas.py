"""Pydantic shapes for the OpenAPI docs. Request bodies are parsed by hand (orjson plus
our own validation, see ``validation.py``) for speed and row-level errors; these models
document them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

PIMA_EXAMPLE = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}


class PredictRequest(BaseModel):
    instances: list[dict[str, Any] | list[Any]] = Field(
        description="Rows: objects keyed by feature name, or lists of values in feature order; "
        "each value of its column's type (see the model's input_schema).",
        examples=[[PIMA_EXAMPLE]],
    )


class Prediction(BaseModel):
    """A classifier's label (with probabilities when it has predict_proba), or a regressor's value."""

    label: Any | None = None
    probabilities: dict[str, float] | None = None
    value: float | None = None


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[Prediction]


class Column(BaseModel):
    name: str
    dtype: str = Field(description="number, integer, boolean, category or string")
    categories: list[Any] | None = None
    unknown_categories: str | None = Field(default=None, description="error: other values are refused")
    nullable: bool


class ModelSummary(BaseModel):
    name: str
    default_version: str
    versions: list[str]
    aliases: dict[str, str]
    required_scope: str | None = Field(default=None, description="the model's own scope, when it requires one")
    task: str = Field(description="classification or regression")
    features: list[str]
    schema_: list[Column] = Field(alias="schema")
    classes: list[Any]
    probabilities: bool
    metrics: dict[str, Any]


class ModelList(BaseModel):
    models: list[ModelSummary]


class ModelDetail(ModelSummary):
    version: str
    input_schema: dict[str, Any]
    metadata: dict[str, Any]


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
