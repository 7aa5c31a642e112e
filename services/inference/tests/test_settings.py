"""Settings come from MODELGATE_INFERENCE_*; a missing or bad one stops the start-up (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from inference_service.app import create_app
from inference_service.settings import InferenceSettings


def test_from_environment(env_clean: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env_clean.setenv("MODELGATE_INFERENCE_MODEL_DIR", str(tmp_path))
    env_clean.setenv("MODELGATE_INFERENCE_JWKS_URL", "http://127.0.0.1:8001/.well-known/jwks.json")
    env_clean.setenv("MODELGATE_INFERENCE_MAX_BATCH_ROWS", "50")
    settings = InferenceSettings()  # type: ignore[call-arg]
    assert settings.model_dir == tmp_path
    assert settings.max_batch_rows == 50
    assert settings.max_upload_bytes == 16 * 1024 * 1024
    assert settings.audience == "modelgate-api"


@pytest.mark.parametrize(
    "env",
    [
        {},  # no model dir, no keys
        {"MODELGATE_INFERENCE_MODEL_DIR": "/models"},  # no key source
        {
            "MODELGATE_INFERENCE_MODEL_DIR": "/m",
            "MODELGATE_INFERENCE_PUBLIC_KEYS": "/k",
            "MODELGATE_INFERENCE_MAX_BATCH_ROWS": "0",
        },
    ],
    ids=["nothing", "no-keys", "zero-rows"],
)
def test_bad_settings_exit_2_naming_the_variable(
    env_clean: pytest.MonkeyPatch, env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in env.items():
        env_clean.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        create_app()
    assert info.value.code == 2
    assert "MODELGATE_INFERENCE_" in capsys.readouterr().err
