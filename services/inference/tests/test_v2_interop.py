"""A standard V2 client (tritonclient.http, unchanged) against a real uvicorn server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from modelgate_shared.stack import free_port
from modelgate_shared.testing import TokenSigner
from tritonclient.utils import InferenceServerException

from .conftest import AUDIENCE, FEATURES, HEALTHY_ROW, ISSUER, PIMA_ROW


@pytest.fixture(scope="module")
def server(model_dir: Path, jwks_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_")},
        "MODELGATE_INFERENCE_MODEL_DIR": str(model_dir),
        "MODELGATE_INFERENCE_PUBLIC_KEYS": str(jwks_path),
        "MODELGATE_INFERENCE_ISSUER": ISSUER,
        "MODELGATE_INFERENCE_AUDIENCE": AUDIENCE,
    }
    log = tmp_path_factory.mktemp("server") / "inference.log"
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
def rows() -> np.ndarray:
    return np.array([[PIMA_ROW[f] for f in FEATURES], [HEALTHY_ROW[f] for f in FEATURES]], dtype=np.float32)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer(server: str, signer: TokenSigner, rows: np.ndarray, binary: bool) -> None:
    headers = {"Authorization": f"Bearer {signer.token('predict models:read')}"}
    client = triton.InferenceServerClient(url=server)
    try:
        assert client.is_server_live(headers=headers)
        assert client.is_server_ready(headers=headers)
        assert client.is_model_ready("diabetes", headers=headers)
        metadata = client.get_model_metadata("diabetes", headers=headers)
        assert metadata["inputs"][0]["shape"] == [-1, 8]

        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("label", "probabilities")]
        result = client.infer("diabetes", [tensor], outputs=outputs, request_id="interop-1", headers=headers)
        assert result.get_response()["id"] == "interop-1"
        assert result.as_numpy("label").tolist() == [1, 0]
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (2, 2)
        assert np.allclose(probabilities.sum(axis=1), 1.0)

        # No outputs named: the client asks for every output in binary form.
        default = client.infer("diabetes", [tensor], model_version="1", headers=headers)
        assert default.as_numpy("label").tolist() == [1, 0]
    finally:
        client.close()


def test_tritonclient_sees_auth_errors(server: str, signer: TokenSigner, rows: np.ndarray) -> None:
    client = triton.InferenceServerClient(url=server)
    try:
        tensor = triton.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        with pytest.raises(InferenceServerException) as missing:
            client.infer("diabetes", [tensor])
        assert missing.value.status() == "401"
        assert "missing bearer token" in missing.value.message()
        with pytest.raises(InferenceServerException) as forbidden:
            client.infer("diabetes", [tensor], headers={"Authorization": f"Bearer {signer.token('models:read')}"})
        assert forbidden.value.status() == "403"
    finally:
        client.close()
