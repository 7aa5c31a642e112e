"""Inference service settings (``MODELGATE_INFERENCE_`` prefix)."""

from __future__ import annotations

from pathlib import Path

from modelgate_shared.settings import ServiceSettings, VerifierSettings
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class InferenceSettings(VerifierSettings, ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MODELGATE_INFERENCE_", extra="ignore", frozen=True)

    # Folder of <name>/<version>/{model.skops,metadata.json} and <name>/@<alias> pointers (see
    # model_store); every model in it is loaded at start, and changes are picked up live.
    model_dir: Path
    # How often the model directory is checked for new versions, moved aliases, access changes.
    model_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Size limit of a model upload (POST /v1/models/{name}/versions, multipart); more is a 413.
    max_model_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    # What an uploaded skops file (a zip archive) may unpack to; more is a 422 (a zip bomb).
    max_model_unpacked_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    # Rows per request (JSON, V2 or CSV); more is a 413.
    max_batch_rows: int = Field(default=10_000, ge=1)
    # Request body size limit for predictions and CSV uploads; more is a 413.
    max_upload_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Bodies at least this large are parsed, validated and predicted in a worker thread, so a
    # big batch never stalls health checks and small requests on the event loop.
    offload_min_body_bytes: int = Field(default=16 * 1024, ge=0)


class ModelDirSettings(BaseSettings):
    """What the offline commands (``train``, ``models``) read: only the model directory, by
    the service's own variable, so they run without any of the server's other settings."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    model_dir: Path = Field(validation_alias=AliasChoices("MODELGATE_INFERENCE_MODEL_DIR"))
