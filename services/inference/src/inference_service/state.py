"""``InferenceState``: everything the lifespan builds once at start and every request reads."""

from __future__ import annotations

from dataclasses import dataclass

from modelgate_shared.health import Check
from modelgate_shared.tokens import TokenVerifier

from .model_store import ModelRegistry, load_registry
from .settings import InferenceSettings


@dataclass(frozen=True, slots=True)
class InferenceState:
    """Lives on ``app.state.inference``; routes reach it through ``deps``."""

    settings: InferenceSettings
    verifier: TokenVerifier
    registry: ModelRegistry

    def readiness_checks(self) -> dict[str, Check]:
        """What ``/readyz`` and ``/v2/health/ready`` report: models loaded, token keys available."""
        return {"keys": self._keys_available, "models": self._models_loaded}

    async def _keys_available(self) -> None:
        if not self.verifier.keys.ready:
            # Keys may appear after start (auth writes them); load them as soon as they do.
            await self.verifier.keys.load()

    async def _models_loaded(self) -> None:
        if not self.registry:
            raise RuntimeError("models not loaded")


def build_state(settings: InferenceSettings) -> InferenceState:
    """Loads every model (blocking file reads and parsing: run it in a thread); a bad model
    file raises ``ModelLoadError`` naming the file. Token keys are loaded by the caller."""
    return InferenceState(
        settings=settings, verifier=settings.build_verifier(), registry=load_registry(settings.model_dir)
    )
