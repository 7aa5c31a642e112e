from __future__ import annotations

from pathlib import Path

import pytest
from modelgate_shared.settings import (
    ServiceSettings,
    VerifierSettings,
    env_variable,
    load_settings,
    settings_problems,
)
from pydantic import AliasChoices, BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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


class Route(BaseModel):
    prefix: str = Field(pattern="^/")


class KindsSettings(BaseSettings):
    """One field of every kind whose errors must name the whole variable."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_KINDS_", extra="ignore")

    policy: str = "1/second"
    routes: list[Route] = []
    limits: dict[str, int] = {}
    port: int = 1
    owner: str | None = Field(default=None, validation_alias=AliasChoices("MODELGATE_OWNER_NAME", "owner"))
    deputy: str | None = None

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        if value == "root":
            raise ValueError("may not be root")
        return value

    @model_validator(mode="after")
    def _whole(self) -> KindsSettings:
        # The two styles whole-model validators use: the field first, or fields in capitals.
        if "/" not in self.policy:
            raise ValueError(f"policy: {self.policy!r} is not LIMIT/PERIOD")
        if self.deputy and not self.owner:
            raise ValueError("set OWNER_NAME too when DEPUTY is set")
        return self


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("MODELGATE_KINDS_PORT", "abc", "MODELGATE_KINDS_PORT: Input should be a valid integer"),
        ("MODELGATE_KINDS_POLICY", "lots", "MODELGATE_KINDS_POLICY: 'lots' is not LIMIT/PERIOD"),
        ("MODELGATE_KINDS_ROUTES", '[{"prefix": "v1"}]', "MODELGATE_KINDS_ROUTES: [0].prefix: String should match"),
        ("MODELGATE_KINDS_ROUTES", "not json", "MODELGATE_KINDS_ROUTES: not valid JSON (Expecting value"),
        ("MODELGATE_KINDS_LIMITS", '{"a": "many"}', "MODELGATE_KINDS_LIMITS: a: Input should be a valid integer"),
        ("MODELGATE_OWNER_NAME", "root", "MODELGATE_OWNER_NAME: may not be root"),
        ("MODELGATE_KINDS_DEPUTY", "bob", "MODELGATE_KINDS_DEPUTY: set OWNER_NAME too when MODELGATE_KINDS_DEPUTY"),
    ],
)
def test_every_error_names_the_whole_variable(
    variable: str, value: str, line: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exc:
        load_settings(KindsSettings)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"\n  {line}" in err
    assert "MODELGATE_KINDS_:" not in err and "MODELGATE_KINDS_MODELGATE" not in err


def test_problems_are_structured_for_callers_that_report_them_their_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELGATE_KINDS_PORT", "abc")
    monkeypatch.setenv("MODELGATE_OWNER_NAME", "root")
    with pytest.raises(ValidationError) as exc:
        KindsSettings()
    problems = settings_problems(KindsSettings, exc.value)
    assert [p.variable for p in problems] == ["MODELGATE_KINDS_PORT", "MODELGATE_OWNER_NAME"]
    assert env_variable(KindsSettings, "owner") == "MODELGATE_OWNER_NAME"
