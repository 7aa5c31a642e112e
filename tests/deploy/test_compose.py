"""No Docker engine runs where the tests run, so check the deployment files' properties statically."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelgate_shared.client_timeouts import HTTP_PROTOCOL

ROOT = Path(__file__).resolve().parents[2]
LONG_RUNNING = ("postgres", "redis", "auth", "inference", "gateway")
APP_SERVICES = ("auth", "inference", "gateway")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _volumes(service: dict[str, Any]) -> list[str]:
    return [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in service.get("volumes", [])]


def test_all_services_present(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        assert name in services
    inits = [n for n in services if n.startswith("init")]
    assert inits, "a one-shot init service is expected"
    for name in inits:
        assert services[name].get("restart") == "no"
    # The init jobs together migrate both schemas, generate keys and train the model.
    commands = " ".join(str(services[n]["command"]) for n in inits)
    for step in ("auth_service migrate", "keys generate --if-missing", "gateway_service", "inference_service.train"):
        assert step.replace(" ", "") in commands.replace("', '", " ").replace(" ", "")


def test_long_running_services_have_healthchecks(compose: dict[str, Any]) -> None:
    for name in LONG_RUNNING:
        check = compose["services"][name].get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"


def test_gateway_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    depends = compose["services"]["gateway"]["depends_on"]
    for dep in ("postgres", "redis", "auth", "inference"):
        assert depends[dep]["condition"] == "service_healthy", dep
    assert compose["services"]["auth"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        conditions = {v["condition"] for v in compose["services"][name]["depends_on"].values()}
        assert conditions <= {"service_healthy", "service_completed_successfully"}


def test_auth_publishes_revocations_to_the_gateways_redis(compose: dict[str, Any]) -> None:
    auth, gateway = compose["services"]["auth"], compose["services"]["gateway"]
    assert auth["environment"]["MODELGATE_AUTH_REDIS_URL"] == gateway["environment"]["MODELGATE_GATEWAY_REDIS_URL"]
    assert auth["depends_on"]["redis"]["condition"] == "service_healthy"
    # One key prefix for both (the default), or both set alike.
    prefixes = {
        svc["environment"].get(f"MODELGATE_{name}_REDIS_KEY_PREFIX")
        for name, svc in (("AUTH", auth), ("GATEWAY", gateway))
    }
    assert len(prefixes) == 1


def test_only_the_gateway_publishes_a_port(compose: dict[str, Any]) -> None:
    published = {name for name, svc in compose["services"].items() if svc.get("ports")}
    assert published == {"gateway"}


def test_private_key_only_in_auth(compose: dict[str, Any]) -> None:
    services = compose["services"]
    holders = {n for n, s in services.items() if any(v.startswith("private-keys:") for v in _volumes(s))}
    long_running_holders = holders & set(LONG_RUNNING)
    assert long_running_holders == {"auth"}
    for name in ("inference", "gateway"):
        public = [v for v in _volumes(services[name]) if v.startswith("public-keys:")]
        assert public and all(v.endswith(":ro") for v in public), name
        env = services[name]["environment"]
        assert any(k.endswith("_PUBLIC_KEYS") for k in env), name


def test_no_secret_literals(compose: dict[str, Any]) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    values = re.findall(r"(?m)^\s*[A-Z_]*(?:PASSWORD|SECRET|TOKEN)[A-Z_]*:\s*(.+)$", text)
    assert values, "expected the password settings to be present"
    for value in values:
        assert value.startswith("${"), f"secret given as a literal: {value}"


def test_gateway_metrics_listener_is_on_the_project_network_only(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    port = str(gateway["environment"]["MODELGATE_GATEWAY_METRICS_PORT"])
    assert [str(p) for p in gateway.get("expose", [])] == [port]
    assert all(not str(p).endswith(f":{port}") for p in gateway["ports"]), "the metrics port must not be published"


def _uvicorn_command(service: str) -> list[str]:
    text = (ROOT / "services" / service / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"(?m)^CMD\s+(\[.*\])\s*$", text)
    assert match, f"{service}: no exec-form CMD"
    command: list[str] = json.loads(match.group(1))
    return command


@pytest.mark.parametrize("service", APP_SERVICES)
def test_services_run_uvicorn_with_client_timeouts(service: str) -> None:
    command = _uvicorn_command(service)
    assert command[command.index("--http") + 1] == HTTP_PROTOCOL
    assert "--no-proxy-headers" in command


@pytest.mark.parametrize("service", APP_SERVICES)
def test_dockerfiles_are_slim_non_root_and_healthchecked(service: str) -> None:
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    stages = re.split(r"(?im)^FROM\s+", text)[1:]
    final = stages[-1]
    assert re.match(r"python:3\.\d+-slim", final), "final stage must be a slim Python image"
    assert re.search(r"(?im)^USER\s+(?!root\b|0\b)\S+", final), "final stage must drop root"
    # One uid and gid in every image, so files on shared volumes (keys, models) have one owner.
    assert "--uid 10001" in final and "--gid 10001" in final, "the modelgate user: uid and gid 10001"
    assert re.search(r"(?im)^HEALTHCHECK\s", final), "final stage needs a HEALTHCHECK"
    assert not re.search(r"(?i)\b(gcc|build-essential|g\+\+)\b", final), "no compilers in the final image"


def _interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with nothing set: the defaults."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_postgres_is_healthy_only_once_it_listens_on_tcp(compose: dict[str, Any]) -> None:
    # On a fresh volume the image's init runs a temporary server on the Unix socket only.
    test = compose["services"]["postgres"]["healthcheck"]["test"]
    command = " ".join(test[1:]) if test[0] in ("CMD", "CMD-SHELL") else " ".join(test)
    assert "pg_isready" in command
    assert re.search(r"(^|\s)(-h|--host)(\s+|=)(127\.0\.0\.1|localhost)\b", command), command


def test_init_model_can_train_from_a_local_file(compose: dict[str, Any]) -> None:
    job = compose["services"]["init-model"]
    binds = [v for v in job["volumes"] if isinstance(v, dict) and v.get("type") == "bind"]
    assert len(binds) == 1
    bind = binds[0]
    assert "${MODELGATE_TRAINING_DATA_FILE:-" in bind["source"]
    assert bind["read_only"] is True and bind["bind"]["create_host_path"] is False
    # The mounted file, when it is a file, is what the job trains from.
    assert bind["target"] in " ".join(job["command"]) and "inference_service.train" in " ".join(job["command"])


def test_auth_trusts_the_gateway_alone(compose: dict[str, Any]) -> None:
    services = compose["services"]
    trusted = json.loads(_interpolate(services["auth"]["environment"]["MODELGATE_AUTH_TRUSTED_PROXIES"]))
    gateway_address = ipaddress.ip_address(_interpolate(services["gateway"]["networks"]["default"]["ipv4_address"]))
    assert [ipaddress.ip_network(t) for t in trusted] == [ipaddress.ip_network(gateway_address)]
    (config,) = compose["networks"]["default"]["ipam"]["config"]
    subnet, dynamic = (
        ipaddress.ip_network(_interpolate(config["subnet"])),
        ipaddress.ip_network(_interpolate(config["ip_range"])),
    )
    # Docker hands out addresses from ip_range only, so no other container can take the gateway's.
    assert gateway_address in subnet and dynamic.subnet_of(subnet) and gateway_address not in dynamic  # type: ignore[arg-type]
    # Every service is on that network alone, so none reaches auth from outside it.
    for name, service in services.items():
        assert set(service.get("networks", {"default": None})) == {"default"}, name


def test_the_offline_advice_names_the_variable_compose_mounts(compose: dict[str, Any], tmp_path: Path) -> None:
    from inference_service.training_data import TrainingDataError, resolve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        unreachable = f"http://127.0.0.1:{s.getsockname()[1]}/pima.csv"  # nothing listens once closed
    with pytest.raises(TrainingDataError) as caught:
        resolve(unreachable, tmp_path, None)
    variable = re.search(r"\bMODELGATE_TRAINING_DATA_FILE\b", str(caught.value))
    assert variable, str(caught.value)
    bind = next(v for v in compose["services"]["init-model"]["volumes"] if isinstance(v, dict))
    assert "${" + variable.group(0) + ":-" in bind["source"]
