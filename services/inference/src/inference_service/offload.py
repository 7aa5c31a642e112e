"""Where CPU-bound request work runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio.to_thread

from .settings import InferenceSettings

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


async def run_cpu(settings: InferenceSettings, size: int, func: Callable[[*Ts], T], *args: *Ts) -> T:
    """Small jobs run inline (a thread hop costs more than they do); big ones in a worker
    thread, so a 10,000-row batch never stalls health checks and small requests."""
    if size >= settings.offload_min_body_bytes:
        return await anyio.to_thread.run_sync(func, *args)
    return func(*args)
