"""Schemathesis against the platform's OpenAPI document, through the gateway with a valid token.

The document is the gateway's ``/openapi.json``: every service's operations as clients see them
(auth under ``/auth``, inference under ``/v1`` and ``/v2``, the gateway's own). Each operation
gets ``MODELGATE_FUZZ_EXAMPLES`` cases that fit the schema and as many that do not, from a fixed
seed (``MODELGATE_FUZZ_SEED``); ``make test`` runs a few per operation, ``make fuzz`` many.
Expected: no 5xx and no dropped connection, ever. Every other answer is the API's to choose.

Runs on ``security_stack`` (rate limits out of the way: a fuzzer's 429 proves nothing) with an
admin token, so the admin operations are fuzzed past their scope check too. The two operations
that end the caller's own session (``PATCH`` and ``DELETE /auth/users/me``) get a user of their
own, re-created or re-logged-in whenever a case deletes it or changes its password, so the
admin token stays good for the rest and every case of theirs still reaches past authentication.

Random path parameters mostly find nothing (a model or user that does not exist is a 404 long
before any interesting code), so each operation is fuzzed with valid and invalid query and body
while the path (and ``?version=``) names what exists: the model, its version, a user kept for the
admin operations. Then, where it has path parameters, with everything generated. The operations
that change what inference serves (uploads, removals, aliases, access, unload) name a model of
their own instead, put back whenever a case removed it.

The V2 ``infer`` operations read their body themselves (JSON or binary tensors), so their entry
in the document has no body schema; the fuzzer gets the Open Inference Protocol's request schema
for them instead (``V2_INFER_REQUEST``), or it would only ever send them an empty body.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import skops.io as sio
from modelgate_shared.stack import Stack
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from ..conftest import SECRETS
from .conftest import SECURITY_ADMIN_PASSWORD, SECURITY_ADMIN_USERNAME, SecurityReport

try:
    import schemathesis
except ImportError:
    if os.environ.get("MODELGATE_FUZZ_REQUIRED"):  # make fuzz: fuzzing is the point
        raise
    pytest.skip("schemathesis is not installed (shared[test] extra: re-run make venv)", allow_module_level=True)

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

# Per operation and variant (see above): make test's few; make fuzz sets 200.
EXAMPLES = int(os.environ.get("MODELGATE_FUZZ_EXAMPLES", "5"))
SEED = int(os.environ.get("MODELGATE_FUZZ_SEED", "20261001"))
SERVICES = ("gateway", "auth", "inference")
# Operations that end the session of whoever calls them.
SELF_DESTRUCTIVE = {("PATCH", "/auth/users/me"), ("DELETE", "/auth/users/me")}
# Operations that change what inference serves: they get a model of their own (``Disposable``),
# or an admin fuzzer would unload or delete the model every other operation needs.
MODEL_CHANGES = {
    ("POST", "/v1/models/{name}/versions"),
    ("DELETE", "/v1/models/{name}/versions/{version}"),
    ("PUT", "/v1/models/{name}/aliases/{alias}"),
    ("DELETE", "/v1/models/{name}/aliases/{alias}"),
    ("PUT", "/v1/models/{name}/access"),
    ("PUT", "/v1/models/{name}/versions/{version}/access"),
    ("POST", "/v2/repository/models/{name}/load"),
    ("POST", "/v2/repository/models/{name}/unload"),
}


V2_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                "FP16", "FP32", "FP64", "BYTES"]  # fmt: skip
V2_INFER_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string", "enum": V2_DATATYPES},
                    "parameters": {"type": "object"},
                    "data": {"type": "array"},
                },
            },
        },
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
    "example": {"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP64",
                            "data": [6, 148, 72, 35, 0, 33.6, 0.627, 50]}]},
}  # fmt: skip


def platform_document(base_url: str, admin_token: str) -> dict[str, Any]:
    """The gateway's OpenAPI document, with the V2 infer request schema where it has none."""
    document: dict[str, Any] = httpx.get(f"{base_url}/openapi.json", timeout=30).json()
    for path, operations in document["paths"].items():
        infer = operations.get("post")
        if path.startswith("/v2/") and path.endswith("/infer") and infer and "requestBody" not in infer:
            infer["requestBody"] = {"required": True, "content": {"application/json": {"schema": V2_INFER_REQUEST}}}
    return document


def service_of(path: str) -> str:
    if path.startswith("/auth/"):
        return "auth"
    if path.startswith(("/v1/", "/v2/")) or path in ("/v1", "/v2"):
        return "inference"
    return "gateway"


class Account:
    """A user whose token the self-destructive operations use, renewed when a case ends it."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.username = self.password = self.token = self.id = ""
        self.create()

    def create(self) -> None:
        self.username, self.password, self.id = sign_up(self.client)
        self.login()

    def login(self) -> None:
        self.token = login(self.client, self.username, self.password)

    def after(self, case: Any, response: requests.Response) -> None:
        """Keep the account usable: the case may have deleted it or changed its password."""
        if case.method == "DELETE" and response.status_code == 204:
            self.create()
        elif case.method == "PATCH" and response.status_code == 200 and isinstance(case.body, dict):
            if isinstance(case.body.get("password"), str):
                self.password = case.body["password"]
                SECRETS.add("password", self.password)
            self.login()


class Target:
    """The user the admin operations' ``{user_id}`` names, re-created when a case deletes it."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.id = sign_up(client)[2]

    def after(self, case: Any, response: requests.Response) -> None:
        if case.method == "DELETE" and response.status_code == 204:
            self.id = sign_up(self.client)[2]


class Disposable:
    """The model the model-changing operations' ``{name}`` names (an iris classifier made here),
    uploaded again or reloaded whenever a case removed or unloaded it."""

    NAME = "fuzzed"

    def __init__(self, client: httpx.Client, admin_token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {admin_token}"}
        features, labels = load_iris(return_X_y=True)
        self.file = sio.dumps(LogisticRegression(max_iter=500).fit(features, labels))
        self.version = ""
        self.after()

    def after(self, *_: Any) -> None:
        listed = self.client.get(f"/v1/models/{self.NAME}/versions", headers=self.headers)
        if listed.status_code == 404 or not listed.json()["versions"]:
            created = self.client.post(
                f"/v1/models/{self.NAME}/versions", files={"file": ("fuzzed.skops", self.file)}, headers=self.headers
            )
            assert created.status_code == 201, created.text
            self.version = str(created.json()["version"])
        else:
            self.version = str(listed.json()["versions"][0]["version"])
            if listed.json()["unloaded"]:
                self.client.post(f"/v2/repository/models/{self.NAME}/load", headers=self.headers)


def sign_up(client: httpx.Client) -> tuple[str, str, str]:
    username, password = f"fuzz-{uuid.uuid4().hex[:12]}", f"pw-{uuid.uuid4().hex}"
    SECRETS.add("password", password)
    response = client.post(
        "/auth/users", json={"username": username, "password": password, "email": f"{username}@example.com"}
    )
    assert response.status_code == 201, response.text
    return username, password, str(response.json()["id"])


def login(client: httpx.Client, username: str, password: str, scope: str | None = None) -> str:
    form = {"grant_type": "password", "username": username, "password": password, **({"scope": scope} if scope else {})}
    response = client.post("/auth/token", data=form)
    assert response.status_code == 200, response.text
    body = response.json()
    SECRETS.record_token_response(body)
    return str(body["access_token"])


@dataclass
class Tally:
    """What one service's operations were sent and what they answered."""

    cases: Counter[str] = field(default_factory=Counter)  # per operation
    statuses: Counter[int] = field(default_factory=Counter)
    per_operation: dict[str, Counter[int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@dataclass
class FuzzTarget:
    schema: Any
    base_url: str
    admin_token: str
    account: Account  # for the operations that end the caller's session
    target: Target  # the user {user_id} names
    model: tuple[str, str]  # a model that exists: name, version
    disposable: Disposable  # the model the model-changing operations name

    def path_parameters(self, changes_models: bool = False) -> dict[str, str]:
        if changes_models:
            return {"name": Disposable.NAME, "version": self.disposable.version}
        return {"name": self.model[0], "version": self.model[1], "user_id": self.target.id}


@pytest.fixture(scope="module")
def fuzz_target(security_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    # Hypothesis keeps caches in ./.hypothesis; not in the work tree.
    set_hypothesis_home_dir(tmp_path_factory.mktemp("hypothesis"))
    with httpx.Client(base_url=security_stack.gateway_url, timeout=30) as client:
        admin = login(client, SECURITY_ADMIN_USERNAME, SECURITY_ADMIN_PASSWORD, "predict models:read admin")
        model = client.get("/v1/models/diabetes", headers={"Authorization": f"Bearer {admin}"})
        assert model.status_code == 200, model.text
        yield FuzzTarget(
            schema=schemathesis.openapi.from_dict(platform_document(security_stack.gateway_url, admin)),
            base_url=security_stack.gateway_url,
            admin_token=admin,
            account=Account(client),
            target=Target(client),
            model=("diabetes", str(model.json()["version"])),
            disposable=Disposable(client, admin),
        )


def reproduction(case: Any, response: requests.Response | None, error: Exception | None) -> str:
    outcome = f"{response.status_code} {response.text[:300]!r}" if response is not None else f"no answer: {error!r}"
    body = repr(case.body)[:300] if case.body is not None else "-"
    return (
        f"{case.method} {case.formatted_path} query={case.query!r} body={body} "
        f"media_type={case.media_type!r} -> {outcome}\n    {case.as_curl_command()}"
    )


def fuzz_operation(operation: Any, fuzz: FuzzTarget, tally: Tally) -> None:
    label = f"{operation.method.upper()} {operation.path}"
    destructive = (operation.method.upper(), operation.path) in SELF_DESTRUCTIVE
    changes_models = (operation.method.upper(), operation.path) in MODEL_CHANGES
    session = requests.Session()
    names = {p.name for p in operation.path_parameters}
    existing = {k: v for k, v in fuzz.path_parameters(changes_models).items() if k in names}
    # The model routes' optional ?version= too: a random one is a 404 before the body is read.
    version = {"version": fuzz.model[1]} if "version" in {p.name for p in operation.query} else None
    variants = [(GenerationMode.POSITIVE, existing, version), (GenerationMode.NEGATIVE, existing, version)]
    if existing:
        variants += [(GenerationMode.POSITIVE, None, None), (GenerationMode.NEGATIVE, None, None)]
    for mode, path_parameters, query in variants:

        @seed(SEED)
        @settings(
            max_examples=EXAMPLES,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(case=operation.as_strategy(generation_mode=mode, path_parameters=path_parameters, query=query))
        def run(case: Any) -> None:
            response = error = None
            token = fuzz.account.token if destructive else fuzz.admin_token
            try:
                response = case.call(
                    base_url=fuzz.base_url, session=session, headers={"Authorization": f"Bearer {token}"}, timeout=30
                )
            except schemathesis.errors.SerializationNotPossible:
                return  # a body schemathesis cannot encode as the media type: nothing was sent
            except requests.RequestException as exc:
                error = exc
            tally.cases[label] += 1
            if response is None or response.status_code >= 500:
                tally.failures.append(reproduction(case, response, error))
            if response is not None:
                tally.statuses[response.status_code] += 1
                tally.per_operation.setdefault(label, Counter())[response.status_code] += 1
                if destructive:
                    fuzz.account.after(case, response)
                elif changes_models:
                    fuzz.disposable.after()
                elif "user_id" in names:
                    fuzz.target.after(case, response)

        # Unsatisfiable: nothing left to get wrong (no parameters but the fixed path, no body).
        with contextlib.suppress(Unsatisfiable):
            run()
    session.close()


@pytest.mark.parametrize("service", SERVICES)
def test_no_fuzzed_request_gets_a_server_error(service: str, fuzz_target: FuzzTarget, report: SecurityReport) -> None:
    operations = [result.ok() for result in fuzz_target.schema.get_all_operations()]
    mine = [op for op in operations if service_of(op.path) == service]
    assert mine, f"the gateway's OpenAPI document lists no {service} operation"
    # The self-destructive ones last, though they have their own account: a bug there must not
    # take the admin token down with it.
    mine.sort(key=lambda op: (op.method.upper(), op.path) in SELF_DESTRUCTIVE)
    tally = Tally()
    for operation in mine:
        fuzz_operation(operation, fuzz_target, tally)
    total = sum(tally.cases.values())
    for status, count in tally.statuses.items():
        report.saw(f"fuzz: {service}", status, count)
    report.note(
        f"fuzz: {service}",
        f"{total} cases over {len(mine)} operations (up to {EXAMPLES} examples per operation and variant, "
        f"seed {SEED}); 5xx or no answer: {len(tally.failures)}",
    )
    report.detail(f"fuzz: {service}", "cases per operation", dict(tally.cases))
    report.detail(f"fuzz: {service}", "statuses per operation", {k: dict(v) for k, v in tally.per_operation.items()})
    assert total >= len(mine), tally.cases
    assert not tally.failures, f"{len(tally.failures)} of {total} {service} cases failed:\n" + "\n".join(
        tally.failures[:20]
    )
