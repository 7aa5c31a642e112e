"""Micro-benchmark: rows/s for 1, 100 and 10,000-row batches, in-process vs through HTTP.

    .venv/bin/python services/inference/bench/predict_bench.py [--seconds 2]

In-process rows time the work a request does without the server (parse JSON, validate,
predict, encode the answer); the encoding rows compare orjson with the standard library
on the same 10,000-row answer. HTTP rows go through a real uvicorn server on a free port
with a signed token, one keep-alive connection, requests one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
from inference_service.api_v1 import predict_json_body
from inference_service.model_store import load_registry
from inference_service.prediction import predict, v1_body
from inference_service.train import train
from inference_service.training_data import DEFAULT_TRAINING_DATA, DEFAULT_TRAINING_DATA_SHA256
from inference_service.validation import instances_to_matrix
from jose import jwt
from modelgate_shared.keys import generate_private_key, private_key_pem, public_jwk, write_jwks
from modelgate_shared.stack import free_port

ROW = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}
SIZES = (1, 100, 10_000)
LOCAL_PIMA = Path(__file__).resolve().parents[4] / "shared" / "data" / "pima-indians-diabetes.csv"


def rate(func: Callable[[], object], rows: int, seconds: float) -> float:
    """Rows per second at the median call time: robust to a busy shared machine."""
    func()  # warm-up
    durations: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < 5:
        start = time.perf_counter()
        func()
        durations.append(time.perf_counter() - start)
    return rows / statistics.median(durations)


def training_data() -> str:
    if value := os.environ.get("MODELGATE_TRAINING_DATA"):
        return value
    return str(LOCAL_PIMA) if LOCAL_PIMA.is_file() else DEFAULT_TRAINING_DATA


def start_server(model_dir: Path, jwks: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MODELGATE_INFERENCE_MODEL_DIR": str(model_dir),
        "MODELGATE_INFERENCE_PUBLIC_KEYS": str(jwks),
        "MODELGATE_INFERENCE_ISSUER": "bench",
        "MODELGATE_INFERENCE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "inference_service.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("inference server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelgate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        train(model_dir=tmp / "models", source=training_data(), expected_sha256=DEFAULT_TRAINING_DATA_SHA256)
        model = load_registry(tmp / "models").get("diabetes")
        assert model is not None
        key = generate_private_key("RS256")
        jwk = public_jwk(key.public_key())
        write_jwks(tmp / "jwks.json", {"keys": [jwk]})
        now = int(time.time())
        claims = {"iss": "bench", "aud": "modelgate-api", "sub": str(uuid.uuid4()), "scope": "predict",
                  "iat": now, "nbf": now, "exp": now + 3600, "jti": uuid.uuid4().hex}  # fmt: skip
        token = jwt.encode(claims, private_key_pem(key), algorithm="RS256", headers={"kid": jwk["kid"]})

        bodies = {n: orjson.dumps({"instances": [ROW] * n}) for n in SIZES}
        print(f"{'batch':>7}  {'in-process rows/s':>18}  {'predict only':>14}  {'HTTP rows/s':>12}")
        port = free_port()
        server = start_server(tmp / "models", tmp / "jwks.json", port)
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
            ) as http:
                for n in SIZES:
                    body = bodies[n]
                    matrix = instances_to_matrix(orjson.loads(body)["instances"], model.features, 10_000)
                    in_process = rate(lambda b=body: predict_json_body(model, b, 10_000), n, args.seconds)
                    predict_only = rate(lambda m=matrix: predict(model, m), n, args.seconds)

                    def over_http(b: bytes = body) -> None:
                        response = http.post(
                            "/v1/models/diabetes/predict", content=b, headers={"Content-Type": "application/json"}
                        )
                        response.raise_for_status()

                    through_http = rate(over_http, n, args.seconds)
                    print(f"{n:>7}  {in_process:>18,.0f}  {predict_only:>14,.0f}  {through_http:>12,.0f}")
        finally:
            server.terminate()
            server.wait(10)

        answer = v1_body(model, predict(model, instances_to_matrix([ROW] * 10_000, model.features, 10_000)))
        fast = rate(lambda: orjson.dumps(answer), 10_000, args.seconds)
        slow = rate(lambda: json.dumps(answer).encode(), 10_000, args.seconds)
        print(
            f"\nencoding a 10,000-row answer: orjson {fast:,.0f} rows/s, json {slow:,.0f} rows/s ({fast / slow:.1f}x)"
        )


if __name__ == "__main__":
    main()
