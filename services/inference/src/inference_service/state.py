"""``InferenceState``: everything the lifespan builds once at start and every request reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from modelgate_shared.health import Check, Degradable
from modelgate_shared.tokens import TokenVerifier

from .model_repository import LoadFailure, ModelRepository
from .model_store import ModelLoadError, ModelRegistry
from .settings import InferenceSettings


@dataclass(frozen=True, slots=True)
class InferenceState:
    """Lives on ``app.state.inference``; routes reach it through ``deps``."""

    settings: InferenceSettings
    verifier: TokenVerifier
    repository: ModelRepository

    @property
    def registry(self) -> ModelRegistry:
        """The registry as of now; a request reads it once and keeps what it resolved."""
        return self.repository.registry

    def readiness_checks(self) -> dict[str, Check | Degradable]:
        """What ``/readyz`` and ``/v2/health/ready`` report: models loaded, token keys
        available, and (without failing readiness) any model version that failed to load."""
        checks: dict[str, Check | Degradable] = {"keys": self._keys_available, "models": self._models_loaded}
        failures = self.repository.failures
        if failures:
            names = ", ".join(f"{f.name}/{f.version}" for f in failures)
            checks["model_loads"] = Degradable(_failed(failures), f"not serving {names} (failed to load, see the log)")
        return checks

    async def _keys_available(self) -> None:
        if not self.verifier.keys.ready:
            # Keys may appear after start (auth writes them); load them as soon as they do.
            await self.verifier.keys.load()

    async def _models_loaded(self) -> None:
        if not self.registry:
            raise RuntimeError("models not loaded")


def _failed(failures: list[LoadFailure]) -> Check:
    async def check() -> None:
        raise ModelLoadError(failures[0].error)

    return check


def build_state(settings: InferenceSettings, on_failure: Callable[[LoadFailure], None] | None = None) -> InferenceState:
    """Loads every model (blocking file reads and parsing: run it in a thread); a bad model
    file raises ``ModelLoadError`` naming the file. Token keys are loaded by the caller.
    ``on_failure`` hears of every version that fails to load later (for the metrics)."""
    repository = ModelRepository(settings.model_dir, on_failure)
    repository.open()
    return InferenceState(settings=settings, verifier=settings.build_verifier(), repository=repository)
