from __future__ import annotations

from pathlib import Path

import pytest
from modelgate_shared.settings import ServiceSettings, VerifierSettings, load_settings
from pydantic_settings import SettingsConfigDict


class DemoSettings(ServiceSettings, VerifierSettings):
    model_config = SettingsConfigDict(env_prefix="MODELGATE_DEMO_", frozen=True)


def test_missing_key_source_fails_fast_naming_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load_settings(DemoSettings)
    assert exc.value.code == 2
    assert "PUBLIC_KEYS" in capsys.readouterr().err


def test_hmac_algorithm_cannot_be_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELGATE_DEMO_PUBLIC_KEYS", str(tmp_path))
    monkeypatch.setenv("MODELGATE_DEMO_TOKEN_ALGORITHMS", '["HS256"]')
    with pytest.raises(SystemExit):
        load_settings(DemoSettings)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELGATE_DEMO_PUBLIC_KEYS", str(tmp_path))
    monkeypatch.setenv("MODELGATE_DEMO_AUDIENCE", "my-api")
    settings = load_settings(DemoSettings)
    assert settings.public_keys == tmp_path
    assert settings.audience == "my-api"
    assert settings.build_verifier().audience == "my-api"
