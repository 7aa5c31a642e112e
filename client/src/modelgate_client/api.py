"""Every API call as data: a ``Call`` says what to send and how to read the answer, so the
sync and the async client share all of it and differ only in how they send and wait."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from . import frames
from .frames import Prediction

T = TypeVar("T")
CsvSource = str | os.PathLike[str] | bytes | IO[bytes]
# KServe V2 datatypes by numpy dtype kind and size, and back.
V2_DATATYPES = {
    ("f", 8): "FP64",
    ("f", 4): "FP32",
    ("i", 8): "INT64",
    ("i", 4): "INT32",
    ("u", 1): "UINT8",
    ("b", 1): "BOOL",
}
NUMPY_DTYPES = {"FP64": "float64", "FP32": "float32", "INT64": "int64", "INT32": "int32", "UINT8": "uint8",
                "BOOL": "bool", "BYTES": "object"}  # fmt: skip
MATRIX_INPUT = "input-0"


@dataclass(frozen=True)
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] | None = None
    content: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Opened afresh for every attempt: a retried upload starts from the beginning.
    files: Callable[[], Any] | None = None
    # Safe to send twice: reads, and predictions (they change nothing).
    idempotent: bool = False


def _json(response: httpx.Response) -> Any:
    return response.json()


def _none(response: httpx.Response) -> None:
    return None


def _json_body(payload: object) -> dict[str, Any]:
    return {"content": frames.dumps(payload), "headers": {"Content-Type": "application/json"}}


def _seg(value: str) -> str:
    return quote(value, safe="")


def _model_path(prefix: str, model: str, version: str | None) -> str:
    path = f"{prefix}/models/{_seg(model)}"
    return f"{path}/versions/{_seg(version)}" if version is not None else path


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# -- models and predictions ------------------------------------------------------------------


def models() -> Call[list[dict[str, Any]]]:
    return Call("GET", "/v1/models", lambda r: list(r.json()["models"]), idempotent=True)


def model(name: str, version: str | None = None) -> Call[dict[str, Any]]:
    return Call("GET", _model_path("/v1", name, version), _json, idempotent=True)


def predict(model: str, rows: object, version: str | None = None) -> Call[Any]:
    instances, shape = frames.instances(rows)

    def parse(response: httpx.Response) -> Any:
        predictions: list[Prediction] = response.json()["predictions"]
        return frames.answer(predictions, shape, rows)

    return Call("POST", _model_path("/v1", model, version) + "/predict", parse, idempotent=True,
                **_json_body({"instances": instances}))  # fmt: skip


@contextmanager
def _opened(source: CsvSource) -> Iterator[IO[bytes]]:
    if isinstance(source, bytes):
        yield io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        with Path(source).open("rb") as file:
            yield file
    else:
        yield source


def predict_csv(model: str, source: CsvSource, *, as_csv: bool = False, version: str | None = None) -> Call[Any]:
    """The file is streamed from disk (multipart, a file object), never read whole here."""
    name = Path(source).name if isinstance(source, str | os.PathLike) else "rows.csv"

    @contextmanager
    def files() -> Iterator[dict[str, tuple[str, IO[bytes], str]]]:
        with _opened(source) as file:
            yield {"file": (name, file, "text/csv")}

    def parse(response: httpx.Response) -> Any:
        return response.text if as_csv else response.json()["predictions"]

    headers = {"Accept": "text/csv"} if as_csv else {"Accept": "application/json"}
    path = _model_path("/v1", model, version) + "/predict-csv"
    return Call("POST", path, parse, headers=headers, files=files, idempotent=True)


def _v2_input(name: str, array: Any) -> dict[str, Any]:
    import numpy as np

    data = np.asarray(array)
    datatype = V2_DATATYPES.get((data.dtype.kind, data.dtype.itemsize))
    if datatype is None:
        if data.dtype.kind in "iu":
            data, datatype = data.astype(np.int64), "INT64"
        elif data.dtype.kind == "f":
            data, datatype = data.astype(np.float64), "FP64"
        else:
            datatype = "BYTES"
    return {"name": name, "shape": list(data.shape), "datatype": datatype, "data": data.ravel().tolist()}


def infer_v2(model: str, inputs: Any, version: str | None = None) -> Call[dict[str, Any]]:
    """``inputs``: one array (the ``[rows, features]`` tensor of an all-numeric model) or a
    mapping of input names to arrays. The answer: output name -> numpy array of its shape."""
    named = inputs if isinstance(inputs, Mapping) else {MATRIX_INPUT: inputs}
    body = {"inputs": [_v2_input(name, value) for name, value in named.items()]}

    def parse(response: httpx.Response) -> dict[str, Any]:
        import numpy as np

        outputs = {}
        for output in response.json()["outputs"]:
            dtype = NUMPY_DTYPES.get(output["datatype"], "object")
            outputs[output["name"]] = np.asarray(output["data"], dtype=dtype).reshape(output["shape"])
        return outputs

    return Call("POST", _model_path("/v2", model, version) + "/infer", parse, idempotent=True, **_json_body(body))


# -- model management (the admin scope) ------------------------------------------------------------

ModelSource = str | os.PathLike[str] | bytes
# A CSV path or bytes, or a pandas DataFrame (Any: pandas is optional, never imported for a type).
SampleSource = Any
HASH_CHUNK_BYTES = 1024 * 1024


def _sha256(source: ModelSource) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with Path(source).open("rb") as file:
        for chunk in iter(lambda: file.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sample_bytes(sample: SampleSource) -> bytes:
    if isinstance(sample, bytes):
        return sample
    if isinstance(sample, str | os.PathLike):
        return Path(sample).read_bytes()
    csv = frames.frame_csv(sample)
    if csv is None:
        raise TypeError("sample must be a CSV path, CSV bytes or a pandas DataFrame")
    return csv


def upload_model(
    name: str,
    file: ModelSource,
    *,
    version: str | None = None,
    sample: SampleSource | None = None,
    description: str = "",
    trust: Sequence[str] = (),
    default: bool = True,
    restricted: bool = False,
    sha256: str | None = None,
) -> Call[dict[str, Any]]:
    """The file is hashed here and the hash sent with it: the server refuses a file that arrives
    different. A caller's ``sha256`` (say, the training run's) is sent instead, so a file that is
    not the one meant is refused too. The file is streamed from disk, the sample read whole (it is
    a few rows)."""
    if isinstance(trust, str):
        raise TypeError("trust must be a list of type names, not one string")
    metadata = _params(version=version, sha256=sha256 or _sha256(file))
    metadata |= {"description": description, "trust": list(trust), "default": default, "restricted": restricted}
    sample_csv = _sample_bytes(sample) if sample is not None else None
    filename = Path(file).name if isinstance(file, str | os.PathLike) else f"{name}.skops"

    @contextmanager
    def files() -> Iterator[dict[str, tuple[str | None, Any, str]]]:
        with _opened(file) as opened:
            parts: dict[str, tuple[str | None, Any, str]] = {
                "file": (filename, opened, "application/octet-stream"),
                # No filename: a form field, the JSON text itself.
                "metadata": (None, frames.dumps(metadata), "application/json"),
            }
            if sample_csv is not None:
                parts["sample"] = ("sample.csv", sample_csv, "text/csv")
            yield parts

    return Call("POST", f"/v1/models/{_seg(name)}/versions", _json, files=files)


def model_versions(name: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/v1/models/{_seg(name)}/versions", _json, idempotent=True)


def delete_model_version(name: str, version: str) -> Call[None]:
    return Call("DELETE", _model_path("/v1", name, version), _none, idempotent=True)


def set_alias(name: str, alias: str, version: str) -> Call[dict[str, Any]]:
    path = f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}"
    return Call("PUT", path, _json, idempotent=True, **_json_body({"version": version}))


def delete_alias(name: str, alias: str) -> Call[None]:
    return Call("DELETE", f"/v1/models/{_seg(name)}/aliases/{_seg(alias)}", _none, idempotent=True)


def set_model_access(name: str, restricted: bool, version: str | None = None) -> Call[dict[str, Any]]:
    path = _model_path("/v1", name, version) + "/access"
    return Call("PUT", path, _json, idempotent=True, **_json_body({"restricted": restricted}))


def repository_index(ready: bool = False) -> Call[list[dict[str, Any]]]:
    # A POST by the protocol, but a read.
    return Call("POST", "/v2/repository/index", _json, idempotent=True, **_json_body({"ready": ready}))


def load_model(name: str) -> Call[None]:
    return Call("POST", f"/v2/repository/models/{_seg(name)}/load", _none, idempotent=True)


def unload_model(name: str) -> Call[None]:
    return Call("POST", f"/v2/repository/models/{_seg(name)}/unload", _none, idempotent=True)


# -- administration (the admin scope) ------------------------------------------------------------


def me() -> Call[dict[str, Any]]:
    return Call("GET", "/auth/users/me", _json, idempotent=True)


def users(limit: int = 100, offset: int = 0) -> Call[dict[str, Any]]:
    return Call("GET", "/auth/users", _json, params=_params(limit=limit, offset=offset), idempotent=True)


def user(user_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/auth/users/{_seg(user_id)}", _json, idempotent=True)


def update_user(user_id: str, changes: Mapping[str, Any]) -> Call[dict[str, Any]]:
    return Call("PATCH", f"/auth/users/{_seg(user_id)}", _json, **_json_body(dict(changes)))


def delete_user(user_id: str) -> Call[None]:
    return Call("DELETE", f"/auth/users/{_seg(user_id)}", _none, idempotent=True)


def clients(owner_id: str | None = None, limit: int = 100, offset: int = 0) -> Call[dict[str, Any]]:
    params = _params(owner_id=owner_id, limit=limit, offset=offset)
    return Call("GET", "/auth/clients", _json, params=params, idempotent=True)


def client(client_id: str) -> Call[dict[str, Any]]:
    return Call("GET", f"/auth/clients/{_seg(client_id)}", _json, idempotent=True)


def create_client(name: str, scopes: list[str] | None = None, owner_id: str | None = None) -> Call[dict[str, Any]]:
    body = _params(name=name, scopes=scopes, owner_id=owner_id)
    return Call("POST", "/auth/clients", _json, **_json_body(body))


def rotate_client_secret(client_id: str, grace_seconds: int | None = None) -> Call[dict[str, Any]]:
    body = _params(grace_seconds=grace_seconds)
    return Call("POST", f"/auth/clients/{_seg(client_id)}/rotate-secret", _json, **_json_body(body))


def update_client(client_id: str, changes: Mapping[str, Any]) -> Call[dict[str, Any]]:
    return Call("PATCH", f"/auth/clients/{_seg(client_id)}", _json, idempotent=True, **_json_body(dict(changes)))


def delete_client(client_id: str) -> Call[None]:
    return Call("DELETE", f"/auth/clients/{_seg(client_id)}", _none, idempotent=True)


def usage(window_seconds: int = 3600) -> Call[dict[str, Any]]:
    return Call("GET", "/admin/usage", _json, params={"window_seconds": window_seconds}, idempotent=True)


def request_log(**filters: Any) -> Call[dict[str, Any]]:
    """Filters: user, status, path, since, until (datetimes or ISO 8601), before_id, limit."""
    params = {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in _params(**filters).items()}
    return Call("GET", "/admin/request-log", _json, params=params, idempotent=True)
