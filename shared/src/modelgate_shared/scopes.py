"""OAuth2 scopes: the fixed ones, and ``predict:<model>`` for models that require their own.

One place for both auth (which grants them) and inference (which checks them), so a scope
auth accepts is one inference understands.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

PREDICT, MODELS_READ, ADMIN = "predict", "models:read", "admin"
BASE_SCOPES: tuple[str, ...] = (PREDICT, MODELS_READ, ADMIN)
# A model's own scope: plain ``predict`` does not reach a model that requires it.
MODEL_SCOPE_PREFIX = PREDICT + ":"
# Model names (and versions, aliases) as the model directory stores them: safe as a path
# segment, a file name and inside a scope.
MODEL_NAME_MAX_LENGTH = 64
MODEL_NAME_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{MODEL_NAME_MAX_LENGTH - 1}}}$")
# The longest scope there is (a model scope with the longest name): what storage must hold.
MAX_SCOPE_LENGTH = len(MODEL_SCOPE_PREFIX) + MODEL_NAME_MAX_LENGTH


def is_model_name(name: str) -> bool:
    # fullmatch: ``$`` alone also matches before a trailing newline ("churn\n").
    return MODEL_NAME_PATTERN.fullmatch(name) is not None


def model_scope(name: str) -> str:
    """The scope a model that requires its own asks for: ``predict:<name>``."""
    if not is_model_name(name):
        # Cut short: the name may be anyone's input.
        raise ValueError(f"model name {name[:80]!r} must match {MODEL_NAME_PATTERN.pattern}")
    return MODEL_SCOPE_PREFIX + name


def is_known_scope(scope: str) -> bool:
    if scope in BASE_SCOPES:
        return True
    return scope.startswith(MODEL_SCOPE_PREFIX) and is_model_name(scope[len(MODEL_SCOPE_PREFIX) :])


def ordered_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Known scopes in a stable order (the fixed ones first, then model scopes by name);
    unknown ones are dropped."""
    wanted = set(scopes)
    return tuple(s for s in BASE_SCOPES if s in wanted) + tuple(
        sorted(s for s in wanted if s not in BASE_SCOPES and is_known_scope(s))
    )
