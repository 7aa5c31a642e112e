"""The served model, loaded the way the inference service loads it: ``model_store.load_registry``
(sha256 check, skops with only the types the metadata trusts, the estimator checked against its
metadata, ``fast_linear``'s compiled ``predict_proba`` when it applies), then the default version."""

from __future__ import annotations

from pathlib import Path

from inference_service.model_store import LoadedModel, ModelLoadError, load_registry


class ModelFileError(RuntimeError):
    """No usable model; the message names the directory."""


def load(model_dir: Path, name: str = "diabetes") -> LoadedModel:
    try:
        model = load_registry(model_dir).get(name)
    except ModelLoadError as exc:
        raise ModelFileError(str(exc)) from None
    if model is None:
        raise ModelFileError(f"no model {name!r} under {model_dir}")
    return model
