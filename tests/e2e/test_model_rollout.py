"""Model management through the gateway and the whole stack: a new version rolls out under
traffic with no failed request and serves within the contract's 5 s, so does moving the default
back; refused uploads change nothing; only admins manage models; and a restricted model is
reached only with its own scope, granted through auth's admin API.

The models are fitted here on a generated frame (not imported from the inference service's
unit tests: both test folders are packages named ``tests``). Version 2 is trained on the
opposite target, so the two versions answer differently, not only in the ``version`` field.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ..conftest import bearer, eventually, password_login, sign_up
from ..resilience.traffic import Call, Outcome, Traffic, counts

# The contract: a new default serves within this of the management call's answer.
ROLLOUT_SECONDS = 5.0
# skops keeps a fitted tree's arrays outside its trusted set: an upload must name it.
TREE = "sklearn.tree._tree.Tree"
# The gateway reads a declared body up to this whole and streams larger ones (its SMALL_BODY).
GATEWAY_SMALL_BODY = 64 * 1024
# Traffic: a few clients, each its own user, paced to stay inside the gateway's per-user limit
# (120/minute with a burst of 120 in this session) for twice the rollout deadlines and more.
CLIENTS = 4
CLIENT_PAUSE_SECONDS = 0.1
# Answers per client after the default moved back.
TAIL_ANSWERS = 3


def applicant_frame(rows: int = 300, seed: int = 7) -> tuple[pd.DataFrame, np.ndarray]:
    """String, integer, boolean and float columns and a rule-based yes/no target."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "city": rng.choice(["paris", "lyon", "nice"], rows),
            "age": rng.integers(18, 80, rows),
            "member": rng.random(rows) > 0.5,
            "income": rng.normal(40_000, 12_000, rows).round(2),
        }
    )
    score = (frame["income"] - 40_000) / 12_000 + frame["member"] * 0.8 + (frame["city"] == "paris") * 0.5
    return frame, np.where(score + rng.normal(0, 0.5, rows) > 0.4, "yes", "no")


def preprocessing() -> ColumnTransformer:
    return ColumnTransformer(
        [("categories", OneHotEncoder(), ["city", "member"]), ("numbers", StandardScaler(), ["age", "income"])]
    )


@dataclass(frozen=True)
class Models:
    v1: Pipeline  # logistic regression: only trusted types
    v2: Pipeline  # random forest on the opposite target: needs TREE trusted
    v1_file: bytes
    v2_file: bytes
    rows: pd.DataFrame  # rows the two versions label differently
    sample: bytes  # CSV with a header, sent with every upload

    def by_version(self, version: str) -> Pipeline:
        return {"1": self.v1, "2": self.v2}[version]

    def labels(self, version: str) -> list[str]:
        return [str(label) for label in self.by_version(version).predict(self.rows)]


@pytest.fixture(scope="module")
def models() -> Models:
    frame, target = applicant_frame()
    v1 = make_pipeline(preprocessing(), LogisticRegression(max_iter=500)).fit(frame, target)
    flipped = np.where(target == "yes", "no", "yes")
    v2 = make_pipeline(preprocessing(), RandomForestClassifier(n_estimators=20, random_state=0)).fit(frame, flipped)
    differ = frame[v1.predict(frame) != v2.predict(frame)].head(6).reset_index(drop=True)
    assert len(differ) == 6, "the two versions must be told apart by their answers"
    v1_file, v2_file = sio.dumps(v1), sio.dumps(v2)
    # Both uploads take the gateway's streamed path, not only its read-whole one.
    assert min(len(v1_file), len(v2_file)) > GATEWAY_SMALL_BODY
    sample = frame.head(20).to_csv(index=False).encode()
    return Models(v1, v2, v1_file, v2_file, differ, sample)


def instances(rows: pd.DataFrame) -> dict[str, Any]:
    """Rows as a client sends them (plain ints, floats, strings and booleans)."""
    return {"instances": rows.to_dict("records")}


def upload_parts(file: bytes, sample: bytes, **metadata: Any) -> dict[str, Any]:
    return {
        "file": ("applicants.skops", file, "application/octet-stream"),
        "metadata": (None, json.dumps(metadata), "application/json"),
        "sample": ("sample.csv", sample, "text/csv"),
    }


async def upload(
    client: httpx.AsyncClient, token: str, name: str, file: bytes, sample: bytes, **metadata: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/models/{name}/versions", files=upload_parts(file, sample, **metadata), headers=bearer(token)
    )


async def upload_v1(client: httpx.AsyncClient, admin_token: str, name: str, models: Models, **metadata: Any) -> None:
    created = await upload(client, admin_token, name, models.v1_file, models.sample, **metadata)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == "1"
    assert created.headers["location"] == f"/v1/models/{name}/versions/1"


async def predict(client: httpx.AsyncClient, token: str, name: str, models: Models) -> httpx.Response:
    return await client.post(f"/v1/models/{name}/predict", json=instances(models.rows), headers=bearer(token))


async def user_token(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """A new user with the default scopes: (user id, password, access token)."""
    username, password, user_id = await sign_up(client)
    return user_id, password, (await password_login(client, username, password))["access_token"]


class Served:
    """What each traffic request (by its X-Request-ID) was answered with: version and labels."""

    def __init__(self, name: str, models: Models) -> None:
        self.name, self.models = name, models
        self.by_request: dict[str, tuple[str, list[str]]] = {}

    def call(self, token: str) -> Call:
        async def send(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
            response = await client.post(
                f"/v1/models/{self.name}/predict",
                json=instances(self.models.rows),
                headers={**headers, **bearer(token)},
            )
            if response.status_code == 200:
                body = response.json()
                labels = [str(p["label"]) for p in body["predictions"]]
                self.by_request[headers["X-Request-ID"]] = (body["version"], labels)
            return response

        return Call("predict", send)

    def version(self, outcome: Outcome) -> str | None:
        answer = self.by_request.get(outcome.request_id)
        return answer[0] if answer else None

    async def until(self, traffic: Traffic, version: str, since: float, what: str) -> None:
        """The last answers (one per client), to requests sent after ``since``, are all ``version``'s."""

        async def check() -> bool | None:
            recent = [o for o in traffic.outcomes if o.sent >= since][-CLIENTS:]
            served = len(recent) == CLIENTS and all(self.version(o) == version for o in recent)
            return True if served else None

        await eventually(check, what, within=ROLLOUT_SECONDS)


async def test_a_new_version_and_a_moved_default_roll_out_under_traffic(
    own_ip_client: httpx.AsyncClient, admin_token: str, models: Models
) -> None:
    client, name = own_ip_client, "applicants"
    clock = asyncio.get_running_loop().time  # the traffic's clock
    await upload_v1(client, admin_token, name, models, description="first")
    tokens = [(await user_token(client))[2] for _ in range(CLIENTS)]
    served = Served(name, models)
    traffic = Traffic(
        client, [served.call(t) for t in tokens], prefix="rollout", workers=CLIENTS, pause=CLIENT_PAUSE_SECONDS
    )
    traffic.start()
    try:
        await traffic.wait_for_answers(2 * CLIENTS)

        before_upload = clock()
        created = await upload(client, admin_token, name, models.v2_file, models.sample, trust=[TREE])
        uploaded = clock()
        assert created.status_code == 201, created.text
        assert created.json()["version"] == "2"
        await served.until(traffic, "2", uploaded, f"version 2 within {ROLLOUT_SECONDS:.0f}s of its upload")

        moved = await client.put(
            f"/v1/models/{name}/aliases/default", json={"version": "1"}, headers=bearer(admin_token)
        )
        moved_at = clock()
        assert moved.status_code == 200, moved.text
        assert moved.json() == {"name": name, "alias": "default", "version": "1"}
        await served.until(traffic, "1", moved_at, f"version 1 within {ROLLOUT_SECONDS:.0f}s of the default's move")
        await traffic.wait_for_answers(TAIL_ANSWERS * CLIENTS)  # traffic outlasts the last reload
    finally:
        outcomes = await traffic.stop()

    assert counts(outcomes) == {"200": len(outcomes)}, "requests failed during the rollout"
    # Every answer is its version's own: the version named and the labels given agree.
    for version, labels in served.by_request.values():
        assert version in ("1", "2")
        assert labels == models.labels(version)
    assert {served.version(o) for o in outcomes if o.done < before_upload} == {"1"}

    listing = await client.get(f"/v1/models/{name}/versions", headers=bearer(admin_token))
    assert listing.status_code == 200, listing.text
    assert listing.json()["default_version"] == "1"
    assert [v["version"] for v in listing.json()["versions"]] == ["1", "2"]
    assert listing.json()["failed"] == []
    # A version is still reachable by name after the default moved off it.
    pinned = await client.post(
        f"/v1/models/{name}/versions/2/predict", json=instances(models.rows), headers=bearer(tokens[0])
    )
    assert pinned.status_code == 200, pinned.text
    assert [str(p["label"]) for p in pinned.json()["predictions"]] == models.labels("2")

    # The gateway logged the multipart uploads as what they were: whole bodies, answered 201.
    async def logged_uploads() -> list[dict[str, Any]] | None:
        path = f"/v1/models/{name}/versions"
        response = await client.get(
            "/admin/request-log", headers=bearer(admin_token), params={"path": path, "status": 201}
        )
        assert response.status_code == 200, response.text
        # The filter is a prefix: other models' uploads match it too.
        rows = [r for r in response.json()["items"] if (r["method"], r["path"]) == ("POST", path)]
        return rows if len(rows) == 2 else None

    rows = await eventually(logged_uploads, "both uploads in the gateway's request log")
    sizes = sorted(len(f) for f in (models.v1_file, models.v2_file))
    assert all(logged > file for logged, file in zip(sorted(r["request_bytes"] for r in rows), sizes, strict=True))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [("truncated", "not a readable skops file"), ("bad-sha256", "sha256"), ("untrusted", "outside skops' trusted set")],
)
async def test_a_refused_upload_is_a_422_saying_why_and_the_default_keeps_serving(
    own_ip_client: httpx.AsyncClient, admin_token: str, models: Models, damage: str, reason: str
) -> None:
    client, name = own_ip_client, f"refusals-{damage}"
    await upload_v1(client, admin_token, name, models)
    _, _, token = await user_token(client)
    parts: dict[str, dict[str, Any]] = {
        "truncated": {"file": models.v1_file[: len(models.v1_file) // 2]},
        "bad-sha256": {"file": models.v2_file, "trust": [TREE], "sha256": hashlib.sha256(models.v1_file).hexdigest()},
        "untrusted": {"file": models.v2_file},  # trust left out
    }
    body = dict(parts[damage])
    refused = await upload(client, admin_token, name, body.pop("file"), models.sample, **body)
    assert refused.status_code == 422, refused.text
    (problem,) = refused.json()["detail"]
    assert problem["loc"][:2] == ["body", "file"]
    assert reason in problem["msg"]
    if damage == "untrusted":
        assert TREE in problem["msg"]  # what to review and name in "trust"

    answer = await predict(client, token, name, models)
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == "1"
    assert [str(p["label"]) for p in answer.json()["predictions"]] == models.labels("1")
    listing = (await client.get(f"/v1/models/{name}/versions", headers=bearer(admin_token))).json()
    assert (listing["default_version"], [v["version"] for v in listing["versions"]]) == ("1", ["1"])
    assert listing["failed"] == []


async def test_only_an_admin_manages_models(own_ip_client: httpx.AsyncClient, admin_token: str, models: Models) -> None:
    client, name = own_ip_client, "applicants-guarded"
    await upload_v1(client, admin_token, name, models)
    _, _, token = await user_token(client)
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"/v1/models/{name}/versions", {"files": upload_parts(models.v1_file, models.sample)}),
        ("DELETE", f"/v1/models/{name}/versions/1", {}),
        ("PUT", f"/v1/models/{name}/aliases/default", {"json": {"version": "1"}}),
        ("PUT", f"/v1/models/{name}/aliases/staging", {"json": {"version": "1"}}),
    ]
    for method, path, body in attempts:
        anonymous = await client.request(method, path, **body)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        user = await client.request(method, path, headers=bearer(token), **body)
        assert user.status_code == 403, (method, path, user.text)
        assert 'error="insufficient_scope"' in user.headers["www-authenticate"]
    # Nothing changed.
    listing = (await client.get(f"/v1/models/{name}/versions", headers=bearer(admin_token))).json()
    assert [v["version"] for v in listing["versions"]] == ["1"]
    assert listing["aliases"].get("staging") is None
    answer = await predict(client, token, name, models)
    assert (answer.status_code, answer.json()["version"]) == (200, "1")


async def test_a_restricted_model_is_reached_with_a_scope_granted_through_auth(
    own_ip_client: httpx.AsyncClient, admin_token: str, models: Models
) -> None:
    client, name = own_ip_client, f"applicants-{uuid.uuid4().hex[:8]}"
    scope = f"predict:{name}"
    await upload_v1(client, admin_token, name, models, restricted=True)
    user_id, password, plain = await user_token(client)
    me = await client.get("/auth/users/me", headers=bearer(plain))
    assert me.status_code == 200, me.text
    username = me.json()["username"]

    refused = await predict(client, plain, name, models)
    assert refused.status_code == 403, refused.text
    assert scope in refused.json()["detail"]
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    # A scope auth never granted cannot be asked for.
    asked = await client.post(
        "/auth/token", data={"grant_type": "password", "username": username, "password": password, "scope": scope}
    )
    assert (asked.status_code, asked.json()["error"]) == (400, "invalid_scope")

    granted = await client.patch(
        f"/auth/users/{user_id}", headers=bearer(admin_token), json={"scopes": ["predict", "models:read", scope]}
    )
    assert granted.status_code == 200, granted.text
    assert scope in granted.json()["scopes"]
    holder = (await password_login(client, username, password))["access_token"]
    answer = await predict(client, holder, name, models)
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == "1"
    assert [str(p["label"]) for p in answer.json()["predictions"]] == models.labels("1")
    # The token issued before the grant does not carry the scope: still refused.
    assert (await predict(client, plain, name, models)).status_code == 403

    async def listed(token: str) -> set[str]:
        response = await client.get("/v1/models", headers=bearer(token))
        assert response.status_code == 200, response.text
        return {m["name"] for m in response.json()["models"]}

    assert name in await listed(holder)
    assert name not in await listed(plain)
