"""A model's input schema: its columns, in order, each with a type a client value must have.

The five types follow what a fitted scikit-learn pipeline can take from a data frame:
``number`` (float), ``integer``, ``boolean``, ``category`` (a fixed set of values, from an
encoder's ``categories_``) and ``string`` (free text). ``metadata.json`` holds the schema as
its ``features`` list; files written before the types existed say ``"dtype": "float64"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NUMBER, INTEGER, BOOLEAN, CATEGORY, STRING = "number", "integer", "boolean", "category", "string"
DTYPES = (NUMBER, INTEGER, BOOLEAN, CATEGORY, STRING)
# Older metadata (and pandas-style names someone may write by hand).
DTYPE_ALIASES = {"float64": NUMBER, "float": NUMBER, "int64": INTEGER, "int": INTEGER, "bool": BOOLEAN}
# What an unknown category does: refused (the encoder's handle_unknown="error"), or passed on.
UNKNOWN_ERROR, UNKNOWN_IGNORE = "error", "ignore"


class SchemaError(ValueError):
    """A ``features`` entry that cannot be read; the message says which."""


def is_missing(value: Any) -> bool:
    return value is None or (type(value) is float and math.isnan(value))


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    dtype: str
    # category only: the values the model was fitted on (missing values left out).
    categories: tuple[Any, ...] = ()
    unknown_categories: str = UNKNOWN_IGNORE
    # Whether a missing value (null, an empty CSV cell, NaN) may reach the model.
    nullable: bool = False
    # For membership checks per value; derived from ``categories``.
    category_set: frozenset[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "category_set", frozenset(self.categories))

    @property
    def value_type(self) -> str:
        """The type of one value: a category column's values are strings, numbers or booleans."""
        if self.dtype != CATEGORY:
            return self.dtype
        if self.categories and all(type(c) is bool for c in self.categories):
            return BOOLEAN
        if self.categories and all(type(c) in (int, float) for c in self.categories):
            return NUMBER
        return STRING

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype}
        if self.dtype == CATEGORY:
            out["categories"] = list(self.categories)
            out["unknown_categories"] = self.unknown_categories
        out["nullable"] = self.nullable
        return out

    @classmethod
    def from_json(cls, data: Any) -> Column:
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise SchemaError(f"feature entry {data!r} is not an object with a name")
        raw = data.get("dtype", NUMBER)
        dtype = DTYPE_ALIASES.get(raw, raw)
        if dtype not in DTYPES:
            raise SchemaError(f"feature {data['name']!r}: dtype {raw!r} is not one of {', '.join(DTYPES)}")
        categories = data.get("categories", [])
        unknown = data.get("unknown_categories", UNKNOWN_IGNORE)
        if not isinstance(categories, list) or unknown not in (UNKNOWN_ERROR, UNKNOWN_IGNORE):
            raise SchemaError(f"feature {data['name']!r}: malformed categories")
        if dtype == CATEGORY and not categories:
            raise SchemaError(f"feature {data['name']!r}: a category column needs its categories")
        return cls(
            name=data["name"],
            dtype=dtype,
            categories=tuple(categories),
            unknown_categories=unknown,
            nullable=bool(data.get("nullable", False)),
        )

    def json_schema(self) -> dict[str, Any]:
        """This column as a JSON Schema property (for the docs and ``/v1/models/{name}``)."""
        kind = self.value_type
        schema: dict[str, Any] = {
            NUMBER: {"type": "number"},
            INTEGER: {"type": "integer"},
            BOOLEAN: {"type": "boolean"},
            STRING: {"type": "string"},
        }[kind]
        if self.dtype == CATEGORY and self.unknown_categories == UNKNOWN_ERROR:
            schema = {**schema, "enum": list(self.categories)}
        if self.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema


@dataclass(frozen=True, slots=True)
class InputSchema:
    columns: tuple[Column, ...]
    # Derived once: requests read these on every prediction.
    names: tuple[str, ...] = field(init=False, compare=False)
    # Every column a number: V2 takes one float tensor for them all.
    numeric: bool = field(init=False, compare=False)
    # ... and none may be missing: the fast float-matrix readers of JSON and CSV apply.
    matrix_ready: bool = field(init=False, compare=False)
    has_integers: bool = field(init=False, compare=False)
    nullable: tuple[bool, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        numeric = all(c.dtype in (NUMBER, INTEGER) for c in self.columns)
        object.__setattr__(self, "names", tuple(c.name for c in self.columns))
        object.__setattr__(self, "numeric", numeric)
        object.__setattr__(self, "matrix_ready", numeric and not any(c.nullable for c in self.columns))
        object.__setattr__(self, "has_integers", any(c.dtype == INTEGER for c in self.columns))
        object.__setattr__(self, "nullable", tuple(c.nullable for c in self.columns))

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.columns]

    @classmethod
    def from_json(cls, features: Any) -> InputSchema:
        if not isinstance(features, Sequence) or isinstance(features, str) or not features:
            raise SchemaError("features must be a non-empty list")
        columns = tuple(Column.from_json(f) for f in features)
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise SchemaError(f"duplicate feature names in {names}")
        return cls(columns)

    def record_schema(self) -> dict[str, Any]:
        """JSON Schema of one ``instances`` record."""
        return {
            "type": "object",
            "properties": {c.name: c.json_schema() for c in self.columns},
            "required": list(self.names),
            "additionalProperties": False,
            "description": f"or a list of {len(self.columns)} values in the order {', '.join(self.names)}",
        }
