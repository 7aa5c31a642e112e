"""Model management for admins: upload, list and remove versions, move aliases, set access.

Every change is made on the model directory (write, check, rename: see ``model_store``), then
this replica reloads at once; the others pick it up on their next poll.
"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Body, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from ..deps import AdminClaims, ModelName, State
from ..json_body import OrjsonResponse, read_form
from ..model_repository import ModelRepository
from ..model_store import (
    DEFAULT_ALIAS,
    NAME_PATTERN,
    ModelAccess,
    read_access,
    remove_alias,
    remove_version,
    write_access,
    write_alias,
)
from ..registration import RegistrationError, register_upload
from ..state import InferenceState
from ..validation import InputError, Problem
from .v1 import detail

router = APIRouter(prefix="/v1", tags=["model management (admin)"])

Version = Annotated[str, Path(pattern=NAME_PATTERN.pattern, description="version name")]
Alias = Annotated[str, Path(pattern=NAME_PATTERN.pattern, description="alias name")]
VersionName = Annotated[str, Field(pattern=NAME_PATTERN.pattern)]
UPLOAD_PARTS = "a 'file' part (the skops file), and optional 'metadata' (JSON) and 'sample' (CSV) parts"


class UploadMetadata(BaseModel):
    """The optional ``metadata`` part of an upload."""

    model_config = ConfigDict(extra="forbid")

    version: VersionName | None = Field(default=None, description="default: the next integer")
    description: str = Field(default="", max_length=2000)
    sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-fA-F]{64}$", description="the file's sha256: a damaged upload is refused"
    )
    trust: list[Annotated[str, Field(max_length=300)]] = Field(
        default_factory=list, max_length=100, description="types outside skops' trusted set that you reviewed"
    )
    default: bool = Field(default=True, description="make the new version the model's default")
    restricted: bool = Field(default=False, description="the version requires the scope predict:<name>")


class AliasTarget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: VersionName


class AccessChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    restricted: bool


UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "skops file"},
                        "metadata": {**UploadMetadata.model_json_schema(), "description": "JSON"},
                        "sample": {"type": "string", "format": "binary", "description": "CSV with a header"},
                    },
                }
            }
        },
    }
}


async def reload_models(repository: ModelRepository) -> None:
    """Apply a change on this replica before answering (the others pick it up on their poll)."""
    await anyio.to_thread.run_sync(repository.reload)


def _problem(loc: tuple[str | int, ...], msg: str, kind: str) -> InputError:
    return InputError([Problem(loc, msg, kind)])


def require_model(state: InferenceState, name: str) -> None:
    """404 unless the model has a folder (served, unloaded or failed alike)."""
    if not (state.settings.model_dir / name).is_dir():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown model {name!r}")


def _require_version(state: InferenceState, name: str, version: str) -> None:
    require_model(state, name)
    if not (state.settings.model_dir / name / version).is_dir():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {name!r} has no version {version!r}")


async def _part_bytes(value: UploadFile | str | None) -> bytes | None:
    if value is None:
        return None
    return await value.read() if isinstance(value, UploadFile) else value.encode()


def _upload_metadata(raw: bytes | None) -> UploadMetadata:
    if raw is None:
        return UploadMetadata()
    try:
        return UploadMetadata.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ("body", "metadata", *first["loc"])
        raise _problem(where, f"invalid metadata: {first['msg']}", "value_error.metadata") from None


@router.get("/models/{name}/versions", summary="Every version of a model, with aliases and load failures")
async def list_versions(_: AdminClaims, state: State, name: ModelName) -> OrjsonResponse:
    repository = state.repository
    registry = repository.registry
    failed = [{"version": f.version, "error": f.error} for f in repository.failures if f.name == name]
    unloaded = name in repository.unloaded()
    if registry.get(name) is None and not failed and not unloaded:
        require_model(state, name)
    versions = []
    for model in registry.models(name):
        meta = model.metadata
        versions.append(
            {
                "version": model.version,
                "task": meta.task,
                "created_at": meta.created_at,
                "model_sha256": meta.model_sha256,
                "description": str(meta.raw.get("description", "")),
                "restricted": registry.access(name).restricts(model.version),
                "required_scope": registry.required_scope(model),
            }
        )
    return OrjsonResponse(
        {
            "name": name,
            "default_version": registry.default_version(name),
            "aliases": registry.aliases(name),
            "restricted": registry.access(name).restricted,
            "unloaded": unloaded,
            "versions": versions,
            "failed": failed,
        }
    )


@router.post(
    "/models/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    summary="Upload a new version (skops file, optional metadata and sample)",
    responses={
        409: {"description": "the version exists"},
        413: {"description": "too large"},
        422: {"description": "refused"},
    },
    openapi_extra=UPLOAD_BODY,
)
async def upload_version(request: Request, claims: AdminClaims, state: State, name: ModelName) -> Response:
    settings = state.settings
    form = await read_form(request, settings.max_model_upload_bytes, parts=UPLOAD_PARTS, max_files=3, max_fields=5)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _problem(("body", "file"), f"missing the 'file' part: expected {UPLOAD_PARTS}", "value_error.missing")
        data = await upload.read()
        filename = upload.filename or ""
        metadata = _upload_metadata(await _part_bytes(form.get("metadata")))
        sample = await _part_bytes(form.get("sample"))
    finally:
        await form.close()
    if not data:
        raise _problem(("body", "file"), "the 'file' part is empty", "value_error.empty")
    actual = hashlib.sha256(data).hexdigest()
    if metadata.sha256 is not None and metadata.sha256.lower() != actual:
        raise _problem(
            ("body", "file"),
            f"the file's sha256 is {actual}, not {metadata.sha256.lower()} as the metadata says: "
            "the upload is damaged or is not the file you meant",
            "value_error.sha256",
        )
    register = partial(
        register_upload,
        settings.model_dir,
        data,
        name=name,
        filename=filename,
        version=metadata.version,
        sample=sample,
        description=metadata.description,
        trust=metadata.trust,
        make_default=metadata.default,
        restricted=metadata.restricted,
        max_sample_rows=settings.max_batch_rows,
        max_unpacked_bytes=settings.max_model_unpacked_bytes,
    )
    try:
        model = await anyio.to_thread.run_sync(register)
    except RegistrationError as exc:
        raise _problem(("body", "file"), str(exc), "value_error.model") from None
    except FileExistsError:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"model {name!r} already has version {metadata.version!r}"
        ) from None
    await reload_models(state.repository)
    registry = state.registry
    served = registry.get(name, model.version) or model
    return OrjsonResponse(
        detail(registry, served, claims.scopes),
        status_code=status.HTTP_201_CREATED,
        headers={"Location": f"/v1/models/{name}/versions/{model.version}"},
    )


@router.delete(
    "/models/{name}/versions/{version}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a version (the last one removes the model)",
    responses={409: {"description": "an alias points at it"}},
)
async def delete_version(_: AdminClaims, state: State, name: ModelName, version: Version) -> Response:
    _require_version(state, name, version)
    try:
        await anyio.to_thread.run_sync(remove_version, state.settings.model_dir, name, version)
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    await reload_models(state.repository)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/models/{name}/aliases/{alias}", summary="Point an alias (default, production, ...) at a version")
async def put_alias(
    _: AdminClaims, state: State, name: ModelName, alias: Alias, target: Annotated[AliasTarget, Body()]
) -> dict[str, str]:
    _require_version(state, name, target.version)
    if (state.settings.model_dir / name / alias).is_dir():
        raise _problem(
            ("path", "alias"), f"{alias!r} is a version of {name!r}, so it cannot be an alias", "value_error"
        )
    failed = [f for f in state.repository.failures if (f.name, f.version) == (name, target.version)]
    if failed:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"version {target.version!r} of {name!r} failed to load: {failed[0].error}"
        )
    await anyio.to_thread.run_sync(write_alias, state.settings.model_dir, name, alias, target.version)
    await reload_models(state.repository)
    return {"name": name, "alias": alias, "version": target.version}


@router.delete("/models/{name}/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove an alias")
async def delete_alias(_: AdminClaims, state: State, name: ModelName, alias: Alias) -> Response:
    require_model(state, name)
    if alias == DEFAULT_ALIAS:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the default alias cannot be removed; point it at another version instead"
        )
    if not await anyio.to_thread.run_sync(remove_alias, state.settings.model_dir, name, alias):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"model {name!r} has no alias {alias!r}")
    await reload_models(state.repository)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _change_access(state: InferenceState, name: str, version: str | None, restricted: bool) -> dict[str, Any]:
    model_dir = state.settings.model_dir

    def change() -> ModelAccess:
        before = read_access(model_dir / name)
        if version is None:
            after = ModelAccess(restricted, before.restricted_versions)
        else:
            versions = before.restricted_versions | {version} if restricted else before.restricted_versions - {version}
            after = ModelAccess(before.restricted, frozenset(versions))
        write_access(model_dir, name, after)
        return after

    after = await anyio.to_thread.run_sync(change)
    await reload_models(state.repository)
    return {"name": name, **after.to_json()}


@router.put("/models/{name}/access", summary="Require the scope predict:<name> for the whole model, or not")
async def put_model_access(
    _: AdminClaims, state: State, name: ModelName, change: Annotated[AccessChange, Body()]
) -> dict[str, Any]:
    require_model(state, name)
    return await _change_access(state, name, None, change.restricted)


@router.put(
    "/models/{name}/versions/{version}/access", summary="Require the scope predict:<name> for one version, or not"
)
async def put_version_access(
    _: AdminClaims, state: State, name: ModelName, version: Version, change: Annotated[AccessChange, Body()]
) -> dict[str, Any]:
    _require_version(state, name, version)
    return await _change_access(state, name, version, change.restricted)
