"""``make test-compose``: the real images and docker-compose.yml on a Docker engine.

Builds every image, starts the stack under a project name of its own (own containers, volumes,
network and images) with the gateway on a free host port, runs the flow through that port and
checks at run time what ``test_compose.py`` checks in the files. ``down -v`` at the end.

Opt-in (``MODELGATE_COMPOSE_TEST=1``, which ``make test-compose`` sets): a build takes minutes.
Without a Docker engine it skips, or fails when ``MODELGATE_COMPOSE_REQUIRED=1``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import skops.io as sio
from modelgate_shared.testing import training_data_source
from modelgate_shared.training_data import DEFAULT_TRAINING_DATA
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[2]
LONG_RUNNING = ("postgres", "redis", "auth", "inference", "gateway")
APP_SERVICES = ("auth", "inference", "gateway")
INIT_JOBS = ("init-auth", "init-gateway", "init-model")
BUILD_TIMEOUT_SECONDS = 3600
HEALTHY_TIMEOUT_SECONDS = 600
SERVICE_UID = "10001"
COMPOSE_ADMIN = "compose-admin"

pytestmark = pytest.mark.skipif(
    not os.environ.get("MODELGATE_COMPOSE_TEST"), reason="builds the images: run by make test-compose"
)


def _say(line: str) -> None:
    print(f"[test-compose] {line}", file=sys.stderr, flush=True)


def _engine_problem() -> str | None:
    """Why no Docker engine can be used here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        info = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if info.returncode != 0 or not info.stdout.strip():
        return f"no Docker engine answers ({(info.stderr.strip().splitlines() or ['docker info failed'])[-1]})"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_network_prefix() -> str:
    """A 10.x.y prefix whose /24 no Docker network on this engine overlaps."""
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True, check=True).stdout.split()
    taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    if ids:
        out = subprocess.run(
            ["docker", "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        taken = [ipaddress.ip_network(s) for s in out.split()]
    for _ in range(100):
        prefix = f"10.{random.randint(200, 254)}.{random.randint(0, 254)}"
        candidate = ipaddress.ip_network(f"{prefix}.0/24")
        if not any(candidate.overlaps(t) for t in taken if t.version == 4):
            return prefix
    raise RuntimeError("no free 10.x.y.0/24 for the project network")


@dataclass
class ComposeStack:
    project: str
    env: dict[str, str]
    log: Path
    port: int
    prefix: str
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "-p", self.project, *args]
        with self.log.open("a") as log:
            log.write(f"\n$ {' '.join(command)}\n")
            log.flush()
            result = subprocess.run(
                command, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True, timeout=timeout
            )
            log.write(result.stdout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} exited {result.returncode}; see {self.log}")
        return result

    def inspect(self) -> dict[str, dict[str, Any]]:
        """Every container of the project (stopped ones too) by service name."""
        ids = self.compose("ps", "-a", "-q").stdout.split()
        if not ids:
            return {}
        out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in json.loads(out)}

    def exec(self, service: str, *command: str) -> str:
        return self.compose("exec", "-T", service, *command).stdout


def _health(container: dict[str, Any]) -> str | None:
    health = container["State"].get("Health")
    return health["Status"] if health else None


def _wait_healthy(stack: ComposeStack) -> None:
    deadline = time.monotonic() + HEALTHY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        containers = stack.inspect()
        for name in INIT_JOBS:
            state = containers.get(name, {}).get("State", {})
            if state.get("Status") == "exited" and state.get("ExitCode") != 0:
                raise AssertionError(
                    f"{name} exited {state['ExitCode']}:\n{stack.compose('logs', name).stdout[-3000:]}"
                )
        if all(_health(containers.get(name, {"State": {}})) == "healthy" for name in LONG_RUNNING):
            stack.containers = containers
            return
        time.sleep(3)
    states = {n: (c["State"]["Status"], _health(c)) for n, c in stack.inspect().items()}
    raise AssertionError(f"not healthy within {HEALTHY_TIMEOUT_SECONDS} s: {states}")


def _dataset_env() -> dict[str, str]:
    """Offline runs mount the local CSV (MODELGATE_TRAINING_DATA_FILE); online ones may use the URL."""
    if file := os.environ.get("MODELGATE_TRAINING_DATA_FILE"):
        return {"MODELGATE_TRAINING_DATA_FILE": str(Path(file).resolve())}
    source = training_data_source()
    if Path(source).is_file():
        return {"MODELGATE_TRAINING_DATA_FILE": str(Path(source).resolve())}
    if source == DEFAULT_TRAINING_DATA:
        _say("no local training CSV: init-model downloads it (set MODELGATE_TRAINING_DATA_FILE when offline)")
    return {"MODELGATE_TRAINING_DATA": source}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    if problem := _engine_problem():
        if os.environ.get("MODELGATE_COMPOSE_REQUIRED"):
            pytest.fail(f"test-compose: {problem}")
        pytest.skip(f"no Docker engine: {problem}")
    version = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    if version.returncode != 0 or not version.stdout.strip().lstrip("v").startswith("2"):
        pytest.fail(
            f"docker compose v2 is needed (docker compose version: {version.stdout.strip() or version.stderr.strip()})"
        )
    port, prefix = _free_port(), _free_network_prefix()
    env = {k: v for k, v in os.environ.items() if k not in {"COMPOSE_FILE", "COMPOSE_PROJECT_NAME"}}
    env.update(
        MODELGATE_POSTGRES_PASSWORD=secrets.token_hex(16),
        MODELGATE_GATEWAY_PORT=str(port),
        MODELGATE_PUBLIC_URL=f"http://127.0.0.1:{port}",
        MODELGATE_NETWORK_PREFIX=prefix,
        MODELGATE_ADMIN_USERNAME=COMPOSE_ADMIN,
        MODELGATE_ADMIN_PASSWORD=secrets.token_hex(16),
        **_dataset_env(),
    )
    stack = ComposeStack(
        project=f"modelgate-test-{uuid.uuid4().hex[:8]}",
        env=env,
        log=tmp_path_factory.mktemp("compose") / "compose.log",
        port=port,
        prefix=prefix,
    )
    started = time.monotonic()
    try:
        _say(f"project {stack.project}, gateway on {stack.url}, network {prefix}.0/24; log {stack.log}")
        stack.compose("build", timeout=BUILD_TIMEOUT_SECONDS)
        built = time.monotonic()
        _say(f"images built in {built - started:.0f} s")
        stack.compose("up", "-d", timeout=HEALTHY_TIMEOUT_SECONDS)
        _wait_healthy(stack)
        _say(f"all services healthy {time.monotonic() - built:.0f} s after up")
        yield stack
    except BaseException:
        logs = stack.compose("logs", "--tail", "40", check=False).stdout
        _say(f"failed; the last lines of every service's log:\n{logs}")
        raise
    finally:
        stack.compose("down", "-v", "--rmi", "local", "--remove-orphans", timeout=600, check=False)
        _say(f"down -v done; {time.monotonic() - started:.0f} s in all")


def test_every_long_running_service_is_healthy_and_every_init_job_succeeded(stack: ComposeStack) -> None:
    containers = stack.inspect()
    for name in LONG_RUNNING:
        assert _health(containers[name]) == "healthy", name
    for name in INIT_JOBS:
        state = containers[name]["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), name


def test_only_the_gateway_publishes_a_port(stack: ComposeStack) -> None:
    published = {
        (name, port)
        for name, container in stack.inspect().items()
        for port, bindings in (container["NetworkSettings"]["Ports"] or {}).items()
        if bindings
    }
    assert published == {("gateway", "8000/tcp")}


def test_the_private_key_volume_is_mounted_by_auth_only(stack: ComposeStack) -> None:
    containers = stack.inspect()

    def mounts(name: str, volume: str) -> list[dict[str, Any]]:
        return [m for m in containers[name]["Mounts"] if m.get("Name") == f"{stack.project}_{volume}"]

    holders = {name for name in containers if mounts(name, "private-keys")}
    assert holders == {"auth", "init-auth"}
    for name in ("inference", "gateway"):
        public = mounts(name, "public-keys")
        assert public and not any(m["RW"] for m in public), name


def test_every_service_runs_as_a_non_root_user(stack: ComposeStack) -> None:
    containers = stack.inspect()
    for name in LONG_RUNNING:
        # Every process of the container as the host sees it: postgres and redis start as root
        # and drop privileges in their entrypoints, so the image's USER alone proves nothing.
        top = subprocess.run(
            ["docker", "top", containers[name]["Id"], "-eo", "pid,uid,comm"], capture_output=True, text=True, check=True
        )
        rows = [line.split() for line in top.stdout.splitlines()[1:] if line.strip()]
        assert rows, name
        assert all(row[1] != "0" for row in rows), f"{name} runs a process as root: {top.stdout}"
    for name in APP_SERVICES:
        assert containers[name]["Config"]["User"] == "modelgate", name
        assert stack.exec(name, "id", "-u").strip() == SERVICE_UID, name
        assert stack.exec(name, "id", "-g").strip() == SERVICE_UID, name


def _sign_up_and_log_in(client: httpx.Client, username: str, password: str) -> str:
    created = client.post(
        "/auth/users", json={"username": username, "password": password, "email": f"{username}@example.com"}
    )
    assert created.status_code == 201, created.text
    token = client.post("/auth/token", data={"grant_type": "password", "username": username, "password": password})
    assert token.status_code == 200, token.text
    access: str = token.json()["access_token"]
    return access


def test_the_flow_through_the_published_port(stack: ComposeStack) -> None:
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
        token = _sign_up_and_log_in(client, f"compose-{uuid.uuid4().hex[:8]}", "correct horse battery")
        auth = {"Authorization": f"Bearer {token}"}
        instance = {"preg": 6, "plas": 148, "pres": 72, "skin": 35, "test": 0, "mass": 33.6, "pedi": 0.627, "age": 50}
        assert client.post("/v1/models/diabetes/predict", json={"instances": [instance]}).status_code == 401
        predicted = client.post("/v1/models/diabetes/predict", json={"instances": [instance]}, headers=auth)
        assert predicted.status_code == 200, predicted.text
        body = predicted.json()
        assert body["model"] == "diabetes" and body["predictions"][0]["label"] in (0, 1)
        v2 = client.post(
            "/v2/models/diabetes/infer",
            json={
                "inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP64", "data": list(instance.values())}]
            },
            headers=auth,
        )
        assert v2.status_code == 200, v2.text
        assert v2.json()["model_name"] == "diabetes" and v2.json()["outputs"]


def test_an_admin_uploads_a_model_that_serves_at_once(stack: ComposeStack) -> None:
    # The model volume is writable by the service's user, and the replica that took the upload serves it.
    features, labels = load_iris(return_X_y=True, as_frame=True)
    model = sio.dumps(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(features, labels))
    with httpx.Client(base_url=stack.url, timeout=60) as client:
        form = {"grant_type": "password", "username": COMPOSE_ADMIN, "password": stack.env["MODELGATE_ADMIN_PASSWORD"],
                "scope": "admin predict models:read"}  # fmt: skip
        admin = {"Authorization": f"Bearer {client.post('/auth/token', data=form).json()['access_token']}"}
        created = client.post("/v1/models/flowers/versions", files={"file": ("flowers.skops", model)}, headers=admin)
        assert created.status_code == 201, created.text
        row = dict(features.iloc[0])
        answer = client.post("/v1/models/flowers/predict", json={"instances": [row]}, headers=admin)
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == "1" and answer.json()["predictions"][0]["label"] == int(labels.iloc[0])
    listed = stack.exec("inference", "ls", "-n", "/models/flowers")
    assert SERVICE_UID in listed, listed


def _login_addresses(stack: ComposeStack, username: str) -> list[str]:
    sql = f"SELECT host(client_ip) FROM logins WHERE username = '{username}' ORDER BY id"  # noqa: S608 - our own name
    out = stack.exec("postgres", "psql", "-U", "modelgate", "-d", "modelgate", "-tAc", sql)
    return out.split()


def test_auth_believes_x_forwarded_for_from_the_gateway_only(stack: ComposeStack) -> None:
    gateway_address = f"{stack.prefix}.10"
    username, password = f"compose-{uuid.uuid4().hex[:8]}", "correct horse battery"
    with httpx.Client(base_url=stack.url, timeout=30) as client:
        _sign_up_and_log_in(client, username, password)
    # A login from another container on the project network, claiming to forward for someone.
    login = (
        "import urllib.parse, urllib.request; "
        f"form = {{'grant_type': 'password', 'username': '{username}', 'password': '{password}'}}; "
        "body = urllib.parse.urlencode(form).encode(); "
        "request = urllib.request.Request('http://auth:8001/token', body, {'X-Forwarded-For': '203.0.113.7'}); "
        "print(urllib.request.urlopen(request, timeout=10).status)"
    )
    assert stack.exec("inference", "python", "-c", login).strip() == "200"
    networks = stack.inspect()["inference"]["NetworkSettings"]["Networks"]
    inference_address = networks[f"{stack.project}_default"]["IPAddress"]
    through_gateway, direct = _login_addresses(stack, username)
    # Through the gateway: the address the gateway saw (Docker's end of the published port), not the gateway's own.
    assert through_gateway != gateway_address
    # Any other container is a client, not a proxy: its X-Forwarded-For is ignored.
    assert direct == inference_address
