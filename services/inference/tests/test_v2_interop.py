"""A standard V2 client (tritonclient.http, unchanged) against a real uvicorn server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from modelgate_shared.testing import TokenSigner
from tritonclient.utils import InferenceServerException

from .conftest import FEATURES, HEALTHY_ROW, PIMA_ROW, uvicorn_server


@pytest.fixture(scope="module")
def server(model_dir: Path, jwks_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with uvicorn_server(model_dir, jwks_path, tmp_path_factory.mktemp("server") / "inference.log") as url:
        yield url


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
