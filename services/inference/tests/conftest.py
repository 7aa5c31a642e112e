"""Fixtures: a real RSA key pair and JWKS file, signed test tokens, a trained model folder,
and the app under test (its lifespan runs, so models load exactly as in production)."""

from __future__ import annotations

import csv
import functools
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from inference_service.app import create_app
from inference_service.settings import InferenceSettings
from inference_service.train import train
from modelgate_shared.stack import free_port
from modelgate_shared.testing import TokenSigner

from .byo_models import build_estimators, write_files

ISSUER = "http://issuer.test/auth"
AUDIENCE = "modelgate-api"
FEATURES = ("preg", "plas", "pres", "skin", "test", "mass", "pedi", "age")
PIMA_ROW = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}
HEALTHY_ROW = {"preg": 1, "plas": 85, "pres": 66, "skin": 29, "test": 0, "mass": 26.6, "pedi": 0.351, "age": 31}


def write_synthetic_csv(path: Path, rows: int = 400, seed: int = 3) -> Path:
    """Pima-shaped data with a plain rule (high glucose and mass means diabetic), so API
    tests do not depend on the real file and their expected labels are obvious."""
    rng = np.random.default_rng(seed)
    plas = rng.uniform(60, 200, rows)
    mass = rng.uniform(18, 50, rows)
    label = ((plas - 120) / 40 + (mass - 32) / 10 + rng.normal(0, 0.3, rows) > 0).astype(int)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*FEATURES, "class"])
        for i in range(rows):
            other = rng.uniform(0, 1, 6)
            writer.writerow(
                [
                    round(other[0] * 10),
                    round(plas[i]),
                    round(40 + other[1] * 50),
                    round(other[2] * 40),
                    round(other[3] * 200),
                    round(mass[i], 1),
                    round(0.1 + other[4], 3),
                    round(21 + other[5] * 50),
                    label[i],
                ]
            )
    return path


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def signer() -> TokenSigner:
    return TokenSigner(issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture(scope="session")
def jwks_path(signer: TokenSigner, keys_dir: Path) -> Path:
    return signer.write_jwks(keys_dir / "jwks.json")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two versions of ``diabetes`` (so version selection is testable), trained once."""
    root = tmp_path_factory.mktemp("models")
    data = write_synthetic_csv(root.parent / "synthetic.csv")
    for _ in range(2):
        train(model_dir=root, source=str(data), expected_sha256=None, columns=None)
    return root


@pytest.fixture
def make_settings(jwks_path: Path, model_dir: Path) -> Callable[..., InferenceSettings]:
    def build(**overrides: Any) -> InferenceSettings:
        values: dict[str, Any] = {
            "model_dir": model_dir,
            "public_keys": jwks_path,
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "key_refresh_interval_seconds": 0,
        }
        values.update(overrides)
        return InferenceSettings(**values)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., InferenceSettings]) -> InferenceSettings:
    return make_settings()


@asynccontextmanager
async def serve(settings: InferenceSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run (models loaded as in production), behind an in-process client."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://inference.test") as http,
    ):
        yield http


@contextmanager
def uvicorn_server(model_dir: Path, jwks_path: Path, log: Path) -> Iterator[str]:
    """The service as production runs it (uvicorn in its own process); yields ``host:port``."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_")},
        "MODELGATE_INFERENCE_MODEL_DIR": str(model_dir),
        "MODELGATE_INFERENCE_PUBLIC_KEYS": str(jwks_path),
        "MODELGATE_INFERENCE_ISSUER": ISSUER,
        "MODELGATE_INFERENCE_AUDIENCE": AUDIENCE,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "inference_service.app:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"127.0.0.1:{port}"
        for _ in range(300):
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"http://{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail(f"server never became ready:\n{log.read_text()}")
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
async def client(settings: InferenceSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings) as http:
        yield http


@pytest.fixture
def env_clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No MODELGATE_* from the developer's shell leaks into a settings test."""
    for name in list(os.environ):
        if name.startswith("MODELGATE_"):
            monkeypatch.delenv(name)
    yield monkeypatch


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server for a folder: (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def estimators() -> dict[str, tuple[Any, Any]]:
    """name -> (fitted estimator, rows to predict), for the bring-your-own tests."""
    return build_estimators()


@pytest.fixture(scope="session")
def files(estimators: dict[str, tuple[Any, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_files(estimators, tmp_path_factory.mktemp("byo"))
