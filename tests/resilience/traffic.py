"""Steady traffic through the gateway, every request with an ``X-Request-ID`` of its own, and
what came back, counted by status.

A :class:`Traffic` runs a number of workers on one ``httpx.AsyncClient``; each worker sends the
calls it is given in turn, as fast as they are answered (a pause between them keeps a fault
case's traffic steady rather than flat out). Every request is one :class:`Outcome`: its id,
when it was sent and answered (the event loop's clock), and its status, or the name of the
exception when no HTTP answer came at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import httpx

PIMA_COLUMNS = ("preg", "plas", "pres", "skin", "test", "mass", "pedi", "age")
PIMA_ROW = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}
MODEL = "diabetes"

# (client, headers with the request id) -> the response. ``name`` tells the kinds apart in counts.
Send = Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Call:
    name: str
    send: Send


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def predict(token: str) -> Call:
    async def send(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
        return await client.post(
            f"/v1/models/{MODEL}/predict", json={"instances": [PIMA_ROW]}, headers={**headers, **bearer(token)}
        )

    return Call("predict", send)


def metadata(token: str, protocol: str = "v1") -> Call:
    async def send(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
        return await client.get(f"/{protocol}/models/{MODEL}", headers={**headers, **bearer(token)})

    return Call(f"metadata-{protocol}", send)


def batch_csv(token: str, rows: int = 50) -> Call:
    """A CSV upload of ``rows`` patients, answered as CSV: the batch-scoring path."""
    lines = [",".join(PIMA_COLUMNS)] + [",".join(str(PIMA_ROW[c]) for c in PIMA_COLUMNS)] * rows
    data = ("\n".join(lines) + "\n").encode()

    async def send(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
        return await client.post(
            f"/v1/models/{MODEL}/predict-csv",
            files={"file": ("patients.csv", data, "text/csv")},
            headers={**headers, **bearer(token), "Accept": "text/csv"},
        )

    return Call("batch", send)


def login(username: str, password: str) -> Call:
    async def send(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
        form = {"grant_type": "password", "username": username, "password": password}
        return await client.post("/auth/token", data=form, headers=headers)

    return Call("login", send)


def discovery() -> Call:
    """Auth's discovery document: an ``/auth/*`` read that needs no database."""

    async def send(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
        return await client.get("/auth/.well-known/openid-configuration", headers=headers)

    return Call("discovery", send)


def is_json_error(response: httpx.Response) -> bool:
    """An error answered as the services answer errors: a JSON object saying what went wrong."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("error") or body.get("detail"))


@dataclass
class Outcome:
    request_id: str
    call: str
    sent: float
    done: float
    status: int | None  # None: no HTTP answer (``error`` names the exception)
    error: str | None = None
    json_error: bool | None = None  # for a 4xx/5xx: whether its body was a JSON error

    @property
    def label(self) -> str:
        return str(self.status) if self.status is not None else self.error or "no answer"

    @property
    def latency(self) -> float:
        return self.done - self.sent


@dataclass
class Traffic:
    """``workers`` loops sending ``calls`` round-robin through ``client`` until :meth:`stop`."""

    client: httpx.AsyncClient
    calls: Sequence[Call]
    prefix: str
    workers: int = 4
    pause: float = 0.01
    outcomes: list[Outcome] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> Traffic:
        calls = itertools.cycle(self.calls)
        self._tasks = [asyncio.create_task(self._worker(calls)) for _ in range(self.workers)]
        return self

    async def _worker(self, calls: Iterable[Call]) -> None:
        loop = asyncio.get_running_loop()
        for call in calls:
            if self._stopping.is_set():
                return
            request_id = f"{self.prefix}-{uuid.uuid4().hex}"
            sent = loop.time()
            try:
                response = await call.send(self.client, {"X-Request-ID": request_id})
            except httpx.HTTPError as exc:
                self.outcomes.append(Outcome(request_id, call.name, sent, loop.time(), None, type(exc).__name__))
            else:
                assert response.headers.get("x-request-id") == request_id, "the gateway replaced a valid request id"
                error_body = is_json_error(response) if response.status_code >= 400 else None
                self.outcomes.append(
                    Outcome(request_id, call.name, sent, loop.time(), response.status_code, None, error_body)
                )
            if self.pause:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.pause)

    def stop_sending(self) -> None:
        """No new requests; those already sent go on."""
        self._stopping.set()

    async def stop(self) -> list[Outcome]:
        """Stop sending; every request already sent is answered (or fails) before this returns."""
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes

    async def wait_for_answers(self, count: int, within: float = 60.0) -> None:
        """Until ``count`` more requests have been answered from now (the traffic is flowing)."""
        loop = asyncio.get_running_loop()
        target = len(self.outcomes) + count
        deadline = loop.time() + within
        while len(self.outcomes) < target:
            if loop.time() > deadline:
                raise AssertionError(f"traffic stalled: {len(self.outcomes)} of {target} requests answered")
            if any(t.done() and t.exception() for t in self._tasks):
                await asyncio.gather(*self._tasks)  # raises the worker's error
            await asyncio.sleep(0.02)

    def between(self, start: float, end: float, calls: Iterable[str] | None = None) -> list[Outcome]:
        """Requests sent at or after ``start`` and answered by ``end``."""
        names = set(calls) if calls is not None else None
        return [o for o in self.outcomes if o.sent >= start and o.done <= end and (names is None or o.call in names)]


def counts(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """Answers by status (or exception name), for assertions and the report."""
    return dict(sorted(Counter(o.label for o in outcomes).items()))


def counts_by_call(outcomes: Iterable[Outcome]) -> dict[str, dict[str, int]]:
    by_call: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_call.setdefault(outcome.call, []).append(outcome)
    return {name: counts(group) for name, group in sorted(by_call.items())}


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = min(len(ordered), max(1, math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
