"""The fault suite's handle on a running stack: kill, stop and start each part, as an orchestrator would.

The services are the launcher's own processes (``modelgate_shared.stack.Stack``): a service is
started again with the launcher's command line and environment, on the same port, and nothing
else is touched. Postgres and Redis are this suite's private servers (``backing_servers``).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import asyncpg
import httpx
from modelgate_shared.db import asyncpg_dsn
from modelgate_shared.stack import SERVICES, Stack

from .backing_servers import RestartablePostgres, RestartableRedis

READY_WITHIN_SECONDS = 120.0


def metric(text: str, name: str) -> float:
    """The sum of every sample of ``name`` (all label sets) in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class FaultStack:
    stack: Stack
    postgres: RestartablePostgres
    redis: RestartableRedis
    # The environment every service starts with; a case may start one with changes (``restart``).
    base_env: Mapping[str, str]
    # What each running service was started with, beyond base_env.
    changes: dict[str, dict[str, str]] = field(default_factory=dict)
    # Where each service's log file stood when it was last started.
    _log_offsets: dict[str, int] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return self.stack.url(name)

    @property
    def gateway_url(self) -> str:
        return self.stack.gateway_url

    def alive(self, name: str) -> bool:
        service = self.stack.services.get(name)
        return service is not None and service.process.poll() is None

    def pid(self, name: str) -> int:
        return self.stack.services[name].process.pid

    def log(self, name: str) -> str:
        """What the service logged since it was last started."""
        path = self.stack.services[name].log_path
        assert path is not None
        with path.open("rb") as log:
            log.seek(self._log_offsets.get(name, 0))
            return log.read().decode(errors="replace")

    # -- the services ------------------------------------------------------------

    async def _exited(self, name: str, within: float) -> int:
        process = self.stack.services[name].process
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while (code := process.poll()) is None:
            if loop.time() > deadline:
                raise AssertionError(f"{name} did not exit within {within:.0f}s")
            await asyncio.sleep(0.02)
        return code

    async def kill(self, name: str) -> None:
        """SIGKILL: the process is gone at once, nothing flushed, nothing closed."""
        self.stack.services[name].process.send_signal(signal.SIGKILL)
        await self._exited(name, 10)

    def send_sigterm(self, name: str) -> None:
        self.stack.services[name].process.send_signal(signal.SIGTERM)

    async def exit_code(self, name: str, within: float = 60) -> int:
        return await self._exited(name, within)

    def spawn(self, name: str, changes: Mapping[str, str] | None = None) -> None:
        """Start ``name`` again with the launcher's command line (from the event loop's thread:
        the launcher's children die with the thread that started them)."""
        assert not self.alive(name), f"{name} is still running"
        previous = self.stack.services.get(name)
        if previous is not None and previous.log_path is not None and previous.log_path.exists():
            self._log_offsets[name] = previous.log_path.stat().st_size
        self.stack.extra_env = {**self.base_env, **(changes or {})}
        try:
            self.stack._spawn(name)
        finally:
            self.stack.extra_env = dict(self.base_env)
        self.changes[name] = dict(changes or {})

    async def wait_ready(self, name: str, within: float = READY_WITHIN_SECONDS) -> None:
        service = self.stack.services[name]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        async with httpx.AsyncClient(base_url=service.url, timeout=5) as client:
            while True:
                if service.process.poll() is not None:
                    raise AssertionError(f"{name} exited with {service.process.returncode}:\n{service.log_tail()}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if loop.time() > deadline:
                    raise AssertionError(f"{name} not ready within {within:.0f}s:\n{service.log_tail()}")
                await asyncio.sleep(0.1)

    async def start(self, name: str, changes: Mapping[str, str] | None = None) -> None:
        self.spawn(name, changes)
        await self.wait_ready(name)

    async def restart(self, name: str, changes: Mapping[str, str] | None = None) -> None:
        """Stop ``name`` gracefully (SIGTERM) and start it with ``changes`` to the base environment."""
        if self.alive(name):
            self.send_sigterm(name)
            await self._exited(name, 60)
        await self.start(name, changes)

    async def ensure_healthy(self) -> None:
        """Everything up, every service with the base environment: where each case starts."""
        if not self.postgres.running():
            await asyncio.to_thread(self.postgres.start)
        if not self.redis.running():
            await self.redis.start()
        for name in SERVICES:  # auth first: it publishes the keys the verifiers load
            if not self.alive(name) or self.changes.get(name):
                await self.restart(name)
        for name in SERVICES:
            await self.wait_ready(name)

    # -- what the gateway reports --------------------------------------------------

    async def metrics(self) -> str:
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=10) as client:
            response = await client.get("/metrics")
        assert response.status_code == 200, response.text
        return response.text

    async def ready_status(self, name: str = "gateway") -> int:
        async with httpx.AsyncClient(base_url=self.url(name), timeout=10) as client:
            return (await client.get("/readyz")).status_code

    # -- the request log, read directly --------------------------------------------

    async def log_counts(self, prefix: str) -> dict[str, int]:
        """Rows in ``request_log`` per request id, for every id that starts with ``prefix``."""
        conn = await asyncpg.connect(asyncpg_dsn(self.postgres.url))
        try:
            rows = await conn.fetch(
                "SELECT request_id, count(*) AS n FROM request_log WHERE starts_with(request_id, $1) GROUP BY 1",
                prefix,
            )
        finally:
            await conn.close()
        return {row["request_id"]: int(row["n"]) for row in rows}

    async def settled_log_counts(self, prefix: str, answered: Collection[str], within: float = 90) -> dict[str, int]:
        """The counts once every answered request has its row and the gateway's queue is empty:
        nothing more can arrive for these ids after that."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            found = await self.log_counts(prefix)
            if all(i in found for i in answered) and metric(await self.metrics(), "gateway_log_queue_depth") == 0:
                return await self.log_counts(prefix)
            if loop.time() > deadline:
                missing = [i for i in answered if i not in found]
                raise AssertionError(f"{len(missing)} answered requests have no request_log row: {missing[:5]}")
            await asyncio.sleep(0.2)


def exactly_one_row_each(counts: Mapping[str, int], answered: Collection[str], sent: Collection[str]) -> list[str]:
    """What is wrong with the request log, if anything: an answered request without its row,
    any request with more than one, a row for an id nobody sent."""
    problems = []
    missing = [i for i in answered if i not in counts]
    if missing:
        problems.append(f"{len(missing)} answered requests have no row (e.g. {missing[:3]})")
    duplicated = {i: n for i, n in counts.items() if n != 1}
    if duplicated:
        problems.append(f"{len(duplicated)} request ids have more than one row (e.g. {list(duplicated.items())[:3]})")
    sent_ids = set(sent)
    stray = [i for i in counts if i not in sent_ids]
    if stray:
        problems.append(f"{len(stray)} rows for request ids never sent (e.g. {stray[:3]})")
    return problems
