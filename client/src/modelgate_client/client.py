"""``Client`` and ``AsyncClient``: the same API, over ``httpx.Client`` and ``httpx.AsyncClient``.

Every call goes through ``_run``: a 429 waits for ``Retry-After`` and tries again, a 5xx (or no
answer) on an idempotent call backs off and tries again, each at most ``max_retries`` times and
never waiting longer than ``max_wait`` at once; whatever is left is a typed error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, overload

import httpx

from . import api
from .api import Call, CsvSource, ModelSource, SampleSource
from .auth import DEFAULT_REFRESH_MARGIN_SECONDS, ClientCredentials, Credentials, PasswordLogin, TokenAuth
from .errors import ModelgateError, RateLimited, ServerError, TransportError, error_for

T = TypeVar("T")
DEFAULT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    # The longest single wait: a Retry-After beyond it is raised as RateLimited at once.
    max_wait: float = 60.0
    backoff: float = 0.5

    def delay(self, attempt: int, error: ModelgateError, idempotent: bool) -> float | None:
        """How long to wait before attempt ``attempt + 1``, or None: raise ``error``."""
        if attempt >= self.max_retries:
            return None
        if isinstance(error, RateLimited):
            wait = error.retry_after if error.retry_after is not None else self._backoff(attempt)
            return wait if wait <= self.max_wait else None
        if isinstance(error, ServerError | TransportError) and idempotent:
            return min(self._backoff(attempt), self.max_wait)
        return None

    def _backoff(self, attempt: int) -> float:
        return float(self.backoff * 2**attempt)


def _credentials(
    username: str | None, password: str | None, client_id: str | None, client_secret: str | None
) -> Credentials | None:
    if username is not None or password is not None:
        if username is None or password is None or client_id is not None or client_secret is not None:
            raise ValueError("give username and password, or client_id and client_secret")
        return PasswordLogin(username, password)
    if client_id is not None or client_secret is not None:
        if client_id is None or client_secret is None:
            raise ValueError("give both client_id and client_secret")
        return ClientCredentials(client_id, client_secret)
    return None


class _Base:
    def __init__(
        self,
        base_url: str,
        *,
        username: str | None,
        password: str | None,
        client_id: str | None,
        client_secret: str | None,
        auth: TokenAuth | None,
        scope: str | None,
        max_retries: int,
        max_wait: float,
        refresh_margin: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        credentials = _credentials(username, password, client_id, client_secret)
        if auth is None and credentials is not None:
            auth = TokenAuth(self.base_url, credentials, scope=scope, refresh_margin=refresh_margin)
        self.auth = auth
        self.retry = RetryPolicy(max_retries=max_retries, max_wait=max_wait)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, auth={self.auth!r})"

    @staticmethod
    def _request_args(call: Call[Any]) -> dict[str, Any]:
        return {"params": call.params, "content": call.content, "headers": dict(call.headers)}

    @staticmethod
    def _outcome(call: Call[T], response: httpx.Response) -> T:
        if response.is_success:
            return call.parse(response)
        raise error_for(response)

    def _no_answer(self, exc: httpx.TransportError) -> TransportError:
        # The exception's type only: its text may quote the URL, never a secret, but stays short.
        return TransportError(f"no answer from {self.base_url}: {type(exc).__name__}")


class Client(_Base):
    """A synchronous client. ``Client(url, username=..., password=...)`` for a person,
    ``Client(url, client_id=..., client_secret=...)`` for a service account."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        auth: TokenAuth | None = None,
        scope: str | None = None,
        max_retries: int = 3,
        max_wait: float = 60.0,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            base_url, username=username, password=password, client_id=client_id, client_secret=client_secret,
            auth=auth, scope=scope, max_retries=max_retries, max_wait=max_wait, refresh_margin=refresh_margin,
        )  # fmt: skip
        self._http = httpx.Client(
            base_url=self.base_url, auth=self.auth, timeout=timeout, transport=transport, headers=headers
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                opened: AbstractContextManager[Any] = call.files() if call.files else nullcontext(None)
                with opened as files:
                    response = self._http.request(call.method, call.path, files=files, **self._request_args(call))
                return self._outcome(call, response)
            except httpx.TransportError as exc:
                error: ModelgateError = self._no_answer(exc)
            except ModelgateError as exc:  # also a token request's, raised inside the auth flow
                error = exc
            delay = self.retry.delay(attempt, error, call.idempotent)
            if delay is None:
                raise error
            time.sleep(delay)
            attempt += 1

    # models and predictions
    def models(self) -> list[dict[str, Any]]:
        return self._run(api.models())

    def model(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self._run(api.model(name, version))

    def predict(self, model: str, rows: Any, *, version: str | None = None) -> Any:
        """Dicts in, a list of prediction dicts out; a DataFrame in, a DataFrame (same index) out;
        a 2-D numpy array in, a 1-D array of labels (or values) out."""
        return self._run(api.predict(model, rows, version))

    @overload
    def predict_csv(
        self, model: str, source: CsvSource, *, as_csv: Literal[False] = ..., version: str | None = ...
    ) -> list[dict[str, Any]]: ...
    @overload
    def predict_csv(
        self, model: str, source: CsvSource, *, as_csv: Literal[True], version: str | None = ...
    ) -> str: ...
    def predict_csv(self, model: str, source: CsvSource, *, as_csv: bool = False, version: str | None = None) -> Any:
        """A CSV file (path, bytes or binary file) with a header row, uploaded as a stream."""
        return self._run(api.predict_csv(model, source, as_csv=as_csv, version=version))

    def infer_v2(self, model: str, inputs: Any, *, version: str | None = None) -> dict[str, Any]:
        return self._run(api.infer_v2(model, inputs, version))

    def me(self) -> dict[str, Any]:
        """The signed-in user (``id`` is every token's ``sub``)."""
        return self._run(api.me())

    # model management (admin)
    def upload_model(
        self,
        name: str,
        file: ModelSource,
        *,
        version: str | None = None,
        sample: SampleSource | None = None,
        description: str = "",
        trust: Sequence[str] = (),
        default: bool = True,
        restricted: bool = False,
        sha256: str | None = None,
    ) -> dict[str, Any]:
        """Upload a skops file (a path or bytes) as a new version of ``name`` (created if new);
        the answer is the version's detail, as ``model(name, version)`` gives it. ``sample``: CSV
        rows (a path, bytes or a DataFrame) the types are read from and the model must predict.
        ``trust``: types outside skops' trusted set that you reviewed. ``default=False`` leaves the
        default version alone; ``restricted`` requires the scope ``predict:<name>``. The file's
        sha256 is sent with it (or ``sha256``, when given): the server refuses a different file."""
        call = api.upload_model(
            name, file, version=version, sample=sample, description=description, trust=trust,
            default=default, restricted=restricted, sha256=sha256,
        )  # fmt: skip
        return self._run(call)

    def model_versions(self, name: str) -> dict[str, Any]:
        """Every version with its hash and access, the aliases, and the versions that failed to load."""
        return self._run(api.model_versions(name))

    def delete_model_version(self, name: str, version: str) -> None:
        """Conflict while an alias points at the version: move the alias first."""
        self._run(api.delete_model_version(name, version))

    def set_alias(self, name: str, alias: str, version: str) -> dict[str, Any]:
        """Point ``alias`` at ``version``; the alias ``default`` moves the default version."""
        return self._run(api.set_alias(name, alias, version))

    def delete_alias(self, name: str, alias: str) -> None:
        self._run(api.delete_alias(name, alias))

    def set_model_access(self, name: str, restricted: bool, *, version: str | None = None) -> dict[str, Any]:
        """Require the scope ``predict:<name>`` for the model (or one version), or stop requiring it."""
        return self._run(api.set_model_access(name, restricted, version))

    def repository_index(self, *, ready: bool = False) -> list[dict[str, Any]]:
        """V2 repository: every version this token may use, with its state (an admin also sees
        unloaded and failed ones, unless ``ready``)."""
        return self._run(api.repository_index(ready))

    def load_model(self, name: str) -> None:
        """V2 repository: serve the model again on every replica."""
        self._run(api.load_model(name))

    def unload_model(self, name: str) -> None:
        """V2 repository: stop serving the model on every replica (its files stay)."""
        self._run(api.unload_model(name))

    # administration
    def users(self, *, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._run(api.users(limit, offset))

    def user(self, user_id: str) -> dict[str, Any]:
        return self._run(api.user(user_id))

    def update_user(self, user_id: str, **changes: Any) -> dict[str, Any]:
        return self._run(api.update_user(user_id, changes))

    def delete_user(self, user_id: str) -> None:
        self._run(api.delete_user(user_id))

    def clients(self, *, owner_id: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._run(api.clients(owner_id, limit, offset))

    def client(self, client_id: str) -> dict[str, Any]:
        return self._run(api.client(client_id))

    def create_client(
        self, name: str, *, scopes: list[str] | None = None, owner_id: str | None = None
    ) -> dict[str, Any]:
        """The new client, with its ``client_secret``: this answer is the only place it is shown."""
        return self._run(api.create_client(name, scopes, owner_id))

    def rotate_client_secret(self, client_id: str, *, grace_seconds: int | None = None) -> dict[str, Any]:
        return self._run(api.rotate_client_secret(client_id, grace_seconds))

    def disable_client(self, client_id: str) -> dict[str, Any]:
        return self._run(api.update_client(client_id, {"disabled": True}))

    def enable_client(self, client_id: str) -> dict[str, Any]:
        return self._run(api.update_client(client_id, {"disabled": False}))

    def delete_client(self, client_id: str) -> None:
        self._run(api.delete_client(client_id))

    def usage(self, *, window_seconds: int = 3600) -> dict[str, Any]:
        return self._run(api.usage(window_seconds))

    def request_log(self, **filters: Any) -> dict[str, Any]:
        return self._run(api.request_log(**filters))


class AsyncClient(_Base):
    """``Client``'s API for asyncio: every call is a coroutine."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        auth: TokenAuth | None = None,
        scope: str | None = None,
        max_retries: int = 3,
        max_wait: float = 60.0,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN_SECONDS,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            base_url, username=username, password=password, client_id=client_id, client_secret=client_secret,
            auth=auth, scope=scope, max_retries=max_retries, max_wait=max_wait, refresh_margin=refresh_margin,
        )  # fmt: skip
        self._http = httpx.AsyncClient(
            base_url=self.base_url, auth=self.auth, timeout=timeout, transport=transport, headers=headers
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            try:
                opened: AbstractContextManager[Any] = call.files() if call.files else nullcontext(None)
                with opened as files:
                    response = await self._http.request(call.method, call.path, files=files, **self._request_args(call))
                return self._outcome(call, response)
            except httpx.TransportError as exc:
                error: ModelgateError = self._no_answer(exc)
            except ModelgateError as exc:
                error = exc
            delay = self.retry.delay(attempt, error, call.idempotent)
            if delay is None:
                raise error
            await asyncio.sleep(delay)
            attempt += 1

    async def models(self) -> list[dict[str, Any]]:
        return await self._run(api.models())

    async def model(self, name: str, version: str | None = None) -> dict[str, Any]:
        return await self._run(api.model(name, version))

    async def predict(self, model: str, rows: Any, *, version: str | None = None) -> Any:
        return await self._run(api.predict(model, rows, version))

    async def predict_csv(
        self, model: str, source: CsvSource, *, as_csv: bool = False, version: str | None = None
    ) -> Any:
        return await self._run(api.predict_csv(model, source, as_csv=as_csv, version=version))

    async def infer_v2(self, model: str, inputs: Any, *, version: str | None = None) -> dict[str, Any]:
        return await self._run(api.infer_v2(model, inputs, version))

    async def me(self) -> dict[str, Any]:
        return await self._run(api.me())

    async def upload_model(
        self,
        name: str,
        file: ModelSource,
        *,
        version: str | None = None,
        sample: SampleSource | None = None,
        description: str = "",
        trust: Sequence[str] = (),
        default: bool = True,
        restricted: bool = False,
        sha256: str | None = None,
    ) -> dict[str, Any]:
        call = api.upload_model(
            name, file, version=version, sample=sample, description=description, trust=trust,
            default=default, restricted=restricted, sha256=sha256,
        )  # fmt: skip
        return await self._run(call)

    async def model_versions(self, name: str) -> dict[str, Any]:
        return await self._run(api.model_versions(name))

    async def delete_model_version(self, name: str, version: str) -> None:
        await self._run(api.delete_model_version(name, version))

    async def set_alias(self, name: str, alias: str, version: str) -> dict[str, Any]:
        return await self._run(api.set_alias(name, alias, version))

    async def delete_alias(self, name: str, alias: str) -> None:
        await self._run(api.delete_alias(name, alias))

    async def set_model_access(self, name: str, restricted: bool, *, version: str | None = None) -> dict[str, Any]:
        return await self._run(api.set_model_access(name, restricted, version))

    async def repository_index(self, *, ready: bool = False) -> list[dict[str, Any]]:
        return await self._run(api.repository_index(ready))

    async def load_model(self, name: str) -> None:
        await self._run(api.load_model(name))

    async def unload_model(self, name: str) -> None:
        await self._run(api.unload_model(name))

    async def users(self, *, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return await self._run(api.users(limit, offset))

    async def user(self, user_id: str) -> dict[str, Any]:
        return await self._run(api.user(user_id))

    async def update_user(self, user_id: str, **changes: Any) -> dict[str, Any]:
        return await self._run(api.update_user(user_id, changes))

    async def delete_user(self, user_id: str) -> None:
        await self._run(api.delete_user(user_id))

    async def clients(self, *, owner_id: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return await self._run(api.clients(owner_id, limit, offset))

    async def client(self, client_id: str) -> dict[str, Any]:
        return await self._run(api.client(client_id))

    async def create_client(
        self, name: str, *, scopes: list[str] | None = None, owner_id: str | None = None
    ) -> dict[str, Any]:
        return await self._run(api.create_client(name, scopes, owner_id))

    async def rotate_client_secret(self, client_id: str, *, grace_seconds: int | None = None) -> dict[str, Any]:
        return await self._run(api.rotate_client_secret(client_id, grace_seconds))

    async def disable_client(self, client_id: str) -> dict[str, Any]:
        return await self._run(api.update_client(client_id, {"disabled": True}))

    async def enable_client(self, client_id: str) -> dict[str, Any]:
        return await self._run(api.update_client(client_id, {"disabled": False}))

    async def delete_client(self, client_id: str) -> None:
        await self._run(api.delete_client(client_id))

    async def usage(self, *, window_seconds: int = 3600) -> dict[str, Any]:
        return await self._run(api.usage(window_seconds))

    async def request_log(self, **filters: Any) -> dict[str, Any]:
        return await self._run(api.request_log(**filters))


__all__ = ["AsyncClient", "Client", "RetryPolicy"]
