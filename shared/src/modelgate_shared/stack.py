"""Start the whole modelgate stack on one machine: ``make up`` and the e2e fixtures.

One code path for both: Postgres and Redis (from URLs, or embedded), a signing key,
the default model, migrations, then auth, inference and the gateway as uvicorn
processes, each waited on until its ``/readyz`` answers 200.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from unittest import mock

import httpx
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from .backing import BackingError, Provided, provide_postgres, provide_redis
from .client_timeouts import HTTP_PROTOCOL
from .db import DatabaseConnectError, wait_for_database
from .settings import DatabaseUrl, SettingProblem, format_problems, settings_problems
from .supervision import Backoff, describe_exit, die_with_parent
from .training_data import DEFAULT_TRAINING_DATA, DEFAULT_TRAINING_DATA_SHA256

SERVICES = ("auth", "inference", "gateway")
# Each service's settings class, imported by name: settings modules are light, and checking
# them before anything starts turns a bad variable into a message within a second.
SERVICE_SETTINGS = {
    "auth": "auth_service.settings:AuthSettings",
    "inference": "inference_service.settings:InferenceSettings",
    "gateway": "gateway_service.settings:GatewaySettings",
}
# Launcher variables the launcher hands to the services under their own names: a problem a
# service finds in one of these is the launcher variable's (when the user did not set it apart).
_PASSED_ON = {
    "MODELGATE_AUTH_DATABASE_URL": "MODELGATE_DATABASE_URL",
    "MODELGATE_GATEWAY_DATABASE_URL": "MODELGATE_DATABASE_URL",
    "MODELGATE_GATEWAY_REDIS_URL": "MODELGATE_REDIS_URL",
    "MODELGATE_AUTH_REDIS_URL": "MODELGATE_REDIS_URL",
    "MODELGATE_AUTH_AUDIENCE": "MODELGATE_AUDIENCE",
    "MODELGATE_INFERENCE_AUDIENCE": "MODELGATE_AUDIENCE",
    "MODELGATE_GATEWAY_AUDIENCE": "MODELGATE_AUDIENCE",
}
# Stand-ins for the backing URLs while settings are checked, before the servers exist.
_UNSTARTED_POSTGRES = "postgresql://postgres@embedded.invalid/postgres"
_UNSTARTED_REDIS = "unix:///embedded.invalid/redis.sock"


class StackError(RuntimeError):
    """The stack cannot start; the message says what is wrong."""


class InvalidSettings(StackError):
    """A setting of the launcher's or of a service is invalid (exit 2, as the services)."""


class StackSettings(BaseSettings):
    """Launcher settings (``MODELGATE_`` prefix); the services have their own."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_", extra="ignore")

    state_dir: Path = Path(".modelgate")
    host: str = "127.0.0.1"
    gateway_port: int = Field(default=8000, ge=0, le=65535)
    auth_port: int = Field(default=8001, ge=0, le=65535)
    inference_port: int = Field(default=8002, ge=0, le=65535)
    database_url: DatabaseUrl | None = None
    redis_url: str | None = None
    training_data: str = DEFAULT_TRAINING_DATA
    training_data_sha256: str = DEFAULT_TRAINING_DATA_SHA256
    audience: str = "modelgate-api"
    startup_timeout_seconds: float = 90.0
    # Workers per service process; 1 keeps the local stack small and the logs readable.
    workers: int = Field(default=1, ge=1, le=32)
    # A service that exits is restarted after 1 s, 2 s, 4 s ... up to this; a service that
    # stayed up a minute starts again at 1 s.
    restart_backoff_max_seconds: float = Field(default=30.0, ge=1.0)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StackError(
                f"port {port} on {host} for {what} is taken ({exc.strerror}); "
                f"stop whatever uses it or set MODELGATE_{what.upper()}_PORT"
            ) from None


@dataclass
class ServiceProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path | None
    started_at: float = field(default_factory=time.monotonic)
    # Restarts in a row (reset once it stays up); when the next one is due; whether to say
    # when it is ready again.
    restarts: int = 0
    restart_at: float | None = None
    announce_ready: bool = False

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Stack:
    settings: StackSettings
    allow_docker: bool = False
    ephemeral: bool = False
    log_to_files: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)
    postgres: Provided | None = None
    redis: Provided | None = None
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    # -- paths and URLs --------------------------------------------------------

    @property
    def state(self) -> Path:
        return self.settings.state_dir.resolve()

    @property
    def private_keys_dir(self) -> Path:
        return self.state / "keys" / "private"

    @property
    def public_jwks(self) -> Path:
        return self.state / "keys" / "public" / "jwks.json"

    @property
    def model_dir(self) -> Path:
        return self.state / "models"

    def url(self, service: str) -> str:
        port = getattr(self.settings, f"{service}_port")
        return f"http://{self.settings.host}:{port}"

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    @property
    def issuer(self) -> str:
        return f"{self.gateway_url}/auth"

    def env(self) -> dict[str, str]:
        """Environment for the services: computed values, then the caller's own
        environment (so any MODELGATE_* the user set wins), then test overrides."""
        assert self.postgres is not None and self.redis is not None
        return self._env(self.postgres.url, self.redis.url)

    def _user_set(self, name: str) -> bool:
        return name in os.environ or name in self.extra_env

    def _env(self, postgres_url: str, redis_url: str) -> dict[str, str]:
        s = self.settings
        computed = {
            "MODELGATE_AUTH_DATABASE_URL": postgres_url,
            "MODELGATE_AUTH_KEYS_DIR": str(self.private_keys_dir),
            "MODELGATE_AUTH_PUBLIC_JWKS_FILE": str(self.public_jwks),
            "MODELGATE_AUTH_ISSUER": self.issuer,
            "MODELGATE_AUTH_AUDIENCE": s.audience,
            "MODELGATE_INFERENCE_MODEL_DIR": str(self.model_dir),
            "MODELGATE_INFERENCE_PUBLIC_KEYS": str(self.public_jwks),
            "MODELGATE_INFERENCE_ISSUER": self.issuer,
            "MODELGATE_INFERENCE_AUDIENCE": s.audience,
            "MODELGATE_INFERENCE_DATA_CACHE_DIR": str(self.state / "data"),
            "MODELGATE_TRAINING_DATA": s.training_data,
            "MODELGATE_TRAINING_DATA_SHA256": s.training_data_sha256,
            "MODELGATE_GATEWAY_DATABASE_URL": postgres_url,
            "MODELGATE_GATEWAY_REDIS_URL": redis_url,
            "MODELGATE_GATEWAY_AUTH_URL": self.url("auth"),
            "MODELGATE_GATEWAY_INFERENCE_URL": self.url("inference"),
            "MODELGATE_GATEWAY_PUBLIC_KEYS": str(self.public_jwks),
            "MODELGATE_GATEWAY_ISSUER": self.issuer,
            "MODELGATE_GATEWAY_AUDIENCE": s.audience,
            "PYTHONUNBUFFERED": "1",
        }
        env = {**computed, **os.environ, **self.extra_env}
        # Auth publishes revocations where the gateway reads them: the gateway's Redis and key
        # prefix, whichever of them the caller set (an auth-specific value still wins).
        for name in ("REDIS_URL", "REDIS_KEY_PREFIX"):
            if f"MODELGATE_GATEWAY_{name}" in env:
                env.setdefault(f"MODELGATE_AUTH_{name}", env[f"MODELGATE_GATEWAY_{name}"])
        return env

    # -- checks before anything starts ---------------------------------------------

    def check_settings(self) -> None:
        """Every service's settings, as the service would read them: raise naming each bad one."""
        s = self.settings
        env = self._env(s.database_url or _UNSTARTED_POSTGRES, s.redis_url or _UNSTARTED_REDIS)
        report = []
        for name, spec in SERVICE_SETTINGS.items():
            module, _, cls_name = spec.partition(":")
            try:
                cls = getattr(importlib.import_module(module), cls_name)
            except (ImportError, AttributeError) as exc:
                raise StackError(f"the {name} service is not installed ({exc}); run make venv") from None
            try:
                # The services read os.environ; this process is single-threaded here (start-up).
                with mock.patch.dict(os.environ, env, clear=True):
                    cls()
            except (ValidationError, SettingsError) as exc:
                problems = [self._as_launchers(p) for p in settings_problems(cls, exc)]
                report.append(format_problems(f"{name} ({cls_name})", problems))
        if report:
            raise InvalidSettings("\n".join(report))

    def _as_launchers(self, problem: SettingProblem) -> SettingProblem:
        """Name a value the launcher passed on by the launcher variable the user set."""
        mine = _PASSED_ON.get(problem.variable)
        if mine is None or self._user_set(problem.variable) or not self._user_set(mine):
            return problem
        return SettingProblem(f"{mine} (passed on as {problem.variable})", problem.reason)

    def _check_databases(self) -> None:
        """A Postgres URL the user gave must answer before migrations run (they retry for a
        while on connection errors): a wrong URL is reported as such, at once."""
        assert self.postgres is not None
        env = self.env()
        checked: set[str] = set()
        for variable in ("MODELGATE_AUTH_DATABASE_URL", "MODELGATE_GATEWAY_DATABASE_URL"):
            url = env[variable]
            if url in checked:
                continue
            checked.add(url)
            if self._user_set(variable):
                name = variable
            elif self.postgres.origin == "environment":
                name = "MODELGATE_DATABASE_URL"
            else:
                continue  # a server of our own: its start-up already proved it answers
            try:
                # No waiting: a server the user named should be up before `make up` is.
                wait_for_database(url, url_setting=name, wait_seconds=0)
            except DatabaseConnectError as exc:
                raise StackError(str(exc)) from None

    # -- lifecycle ---------------------------------------------------------------

    def _log_target(self, name: str) -> tuple[IO[bytes] | None, Path | None]:
        if not self.log_to_files:
            return None, None
        path = self.state / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("ab"), path

    def _run_step(self, what: str, args: list[str]) -> None:
        result = subprocess.run(
            [sys.executable, *args], env=self.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            raise StackError(f"{what} failed (exit {result.returncode}):\n{detail}")
        if result.stdout.strip() and not self.log_to_files:
            print(result.stdout.strip())

    def prepare(self) -> None:
        """Backing services, key pair, model and migrations: everything before the servers."""
        s = self.settings
        for name in SERVICES:
            _check_port_free(s.host, getattr(s, f"{name}_port"), name)
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o700)
        try:
            self.postgres = provide_postgres(
                self.state / "postgres", allow_docker=self.allow_docker, delete_on_close=self.ephemeral
            )
            self.redis = provide_redis(
                self.state / "redis", allow_docker=self.allow_docker, delete_on_close=self.ephemeral
            )
        except BackingError as exc:
            raise StackError(str(exc)) from None
        self._check_databases()
        self._run_step("generating the signing key", ["-m", "auth_service", "keys", "generate", "--if-missing"])
        self._run_step("training the default model", ["-m", "inference_service.train", "--if-missing"])
        self._run_step("auth migrations", ["-m", "auth_service", "migrate"])
        self._run_step("gateway migrations", ["-m", "gateway_service", "migrate"])

    def _spawn(self, name: str) -> ServiceProcess:
        port = getattr(self.settings, f"{name}_port")
        args = [
            sys.executable, "-m", "uvicorn", f"{name}_service.app:create_app", "--factory",
            "--host", self.settings.host, "--port", str(port),
            "--no-access-log", "--timeout-graceful-shutdown", "15",
            # Each service decides itself which peers may set X-Forwarded-For (TRUSTED_PROXIES);
            # uvicorn's default would believe any loopback peer, and everything here is loopback.
            "--no-proxy-headers",
            # Deadlines for a client's request headers and body (MODELGATE_HEADER_TIMEOUT_SECONDS,
            # MODELGATE_BODY_TIMEOUT_SECONDS): uvicorn alone holds a slow client for ever.
            "--http", HTTP_PROTOCOL,
        ]  # fmt: skip
        if self.settings.workers > 1:
            args += ["--workers", str(self.settings.workers)]
        out, path = self._log_target(name)
        proc = subprocess.Popen(
            args,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            # A process group of its own: a Ctrl-C reaches the launcher only, which stops the
            # services in order, and uvicorn's workers can be cleaned up with their master.
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        if out is not None:
            out.close()
        service = self.services[name] = ServiceProcess(name, self.url(name), proc, path)
        return service

    def _wait_ready(self, service: ServiceProcess, deadline: float) -> None:
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if service.process.poll() is not None:
                    raise StackError(
                        f"{service.name} exited with code {service.process.returncode} during start-up\n"
                        f"{service.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{service.url}/readyz").status_code == 200:
                        return
                time.sleep(0.2)
        raise StackError(
            f"{service.name} was not ready within {self.settings.startup_timeout_seconds:.0f}s "
            f"({service.url}/readyz)\n{service.log_tail()}"
        )

    def start(self) -> None:
        self.check_settings()
        try:
            self.prepare()
            deadline = time.monotonic() + self.settings.startup_timeout_seconds
            # auth first: it publishes the key set the verifiers load at start.
            for name in SERVICES:
                self._spawn(name)
                self._wait_ready(self.services[name], deadline)
        except BaseException:
            self.stop()
            raise

    def check_alive(self) -> ServiceProcess | None:
        """The first service that has exited, if any."""
        return next((s for s in self.services.values() if s.process.poll() is not None), None)

    def supervise(self, backoff: Backoff, report: Callable[[str], None]) -> None:
        """One round of supervision (``up`` calls it twice a second): restart what exited.

        A service that exits is restarted after ``backoff``'s delay, growing while it keeps
        exiting; the others are left alone. ``running_stack`` never calls this: the tests
        that stop a service on purpose decide themselves when it comes back.
        """
        now = time.monotonic()
        for name in SERVICES:
            service = self.services.get(name)
            if service is None:
                continue
            if service.restart_at is not None:
                if now >= service.restart_at:
                    restarts = service.restarts + 1
                    report(f"modelgate: restarting {name} (restart {restarts} in a row)")
                    fresh = self._spawn(name)
                    fresh.restarts, fresh.announce_ready = restarts, True
            elif (code := service.process.poll()) is not None:
                _kill_group(service.process)
                service.restarts = backoff.next_restarts(service.restarts, now - service.started_at)
                delay = backoff.delay(service.restarts)
                service.restart_at = now + delay
                report(f"modelgate: {name} {describe_exit(code)}; restarting it in {delay:g}s")
            elif service.announce_ready and _ready(service.url):
                service.announce_ready = False
                report(f"modelgate: {name} is ready again at {service.url}")

    def stop(self) -> None:
        # Gateway first so it flushes its request log while Postgres is still up.
        for name in reversed(SERVICES):
            service = self.services.pop(name, None)
            if service is None:
                continue
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
            try:
                service.process.wait(20)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()
            _kill_group(service.process)
        for backing in (self.redis, self.postgres):
            if backing is not None:
                with contextlib.suppress(Exception):
                    backing.close()
        self.redis = self.postgres = None


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Whatever is left of a service's process group once its master is gone (workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def running_stack(
    *, state_dir: Path | None = None, extra_env: Mapping[str, str] | None = None, **overrides: object
) -> Iterator[Stack]:
    """A throwaway stack on free ports (the e2e fixtures use this). Not supervised: a service
    that exits stays down (``check_alive`` says which), as tests that stop one expect."""
    with tempfile.TemporaryDirectory(prefix="modelgate-e2e-") as tmp:
        settings = StackSettings(
            state_dir=state_dir or Path(tmp),
            gateway_port=free_port(),
            auth_port=free_port(),
            inference_port=free_port(),
            **overrides,  # type: ignore[arg-type]
        )
        stack = Stack(settings, allow_docker=True, ephemeral=True, log_to_files=True, extra_env=extra_env or {})
        stack.start()
        try:
            yield stack
        finally:
            stack.stop()


EXAMPLE_INSTANCES = '{"instances": [{"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}]}'  # noqa: E501


def _banner(stack: Stack) -> str:
    g = stack.gateway_url
    assert stack.postgres is not None and stack.redis is not None
    return f"""
modelgate is up.
  gateway   {g}   (the one URL clients use)
  API docs  {g}/docs
  state     {stack.state}   (keys, model, embedded databases, logs)
  postgres  {stack.postgres.origin}; redis {stack.redis.origin}

Try the whole flow:
  curl -s -X POST {g}/auth/users -H 'Content-Type: application/json' \\
       -d '{{"username": "alice", "password": "correct horse battery", "email": "alice@example.com"}}'
  TOKEN=$(curl -s -X POST {g}/auth/token -d username=alice -d 'password=correct horse battery' \\
       -d grant_type=password | python3 -c 'import sys, json; print(json.load(sys.stdin)["access_token"])')
  curl -s -X POST {g}/v1/models/diabetes/predict -H "Authorization: Bearer $TOKEN" \\
       -H 'Content-Type: application/json' \\
       -d '{EXAMPLE_INSTANCES}'

Ctrl-C stops everything.
"""


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def up(settings: StackSettings) -> int:
    """Run the stack in the foreground until Ctrl-C/SIGTERM, restarting a service that exits."""
    stack = Stack(settings)
    backoff = Backoff(cap=settings.restart_backoff_max_seconds)
    # SIGTERM behaves like Ctrl-C, at any point, start-up included: start() undoes
    # what it began, and the finally below stops the rest. Nothing is left running.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    exit_code = 0
    try:
        print(f"modelgate: starting (state in {stack.state}) ...", flush=True)
        stack.start()
        print(_banner(stack), flush=True)
        while True:
            stack.supervise(backoff, _say)
            time.sleep(0.5)
    except InvalidSettings as exc:
        print(f"modelgate: cannot start: {exc}", file=sys.stderr)
        exit_code = 2
    except StackError as exc:
        print(f"modelgate: cannot start: {exc}", file=sys.stderr)
        exit_code = 1
    except KeyboardInterrupt:
        print("modelgate: stopping ...", flush=True)
    finally:
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("modelgate: stopped", flush=True)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelgate_shared.stack", description=__doc__)
    parser.add_argument("command", choices=["up"], nargs="?", default="up")
    parser.parse_args(argv)
    from .settings import load_settings

    return up(load_settings(StackSettings))


if __name__ == "__main__":
    raise SystemExit(main())
