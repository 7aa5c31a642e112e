"""Model management over HTTP: uploads (checked, atomic), versions, aliases, access scopes, the
V2 repository extension, and live reload of the model directory by every replica."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from inference_service.model_repository import ModelRepository
from inference_service.model_store import METADATA_FILE, MODEL_FILE, set_unloaded, write_alias
from inference_service.settings import InferenceSettings
from modelgate_shared.testing import TokenSigner

from .byo_models import HGB_PREDICTOR, TREE, check_v1, records
from .conftest import HEALTHY_ROW, PIMA_ROW, serve

ADMIN = "admin predict models:read"
USER = "predict models:read"
TRUST = {"applicants": [], "progression": [HGB_PREDICTOR], "iris": [TREE]}


@pytest.fixture
def live_dir(model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the diabetes model folder, for tests that change it."""
    root = tmp_path / "models"
    shutil.copytree(model_dir, root)
    return root


@pytest.fixture
async def live(live_dir: Path, make_settings: Callable[..., InferenceSettings]) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(make_settings(model_dir=live_dir, model_poll_seconds=0.1)) as http:
        yield http


def upload(
    files: Path, name: str, *, metadata: dict[str, Any] | None = None, data: bytes | None = None, sample: bool = True
) -> dict[str, Any]:
    parts: dict[str, Any] = {
        "file": (f"{name}.skops", data if data is not None else (files / f"{name}.skops").read_bytes())
    }
    if sample:
        parts["sample"] = ("sample.csv", (files / f"{name}-sample.csv").read_bytes(), "text/csv")
    body = {"trust": TRUST.get(name, []), **(metadata or {})}
    parts["metadata"] = (None, json.dumps(body), "application/json")
    return parts


async def post_version(
    http: httpx.AsyncClient, signer: TokenSigner, files: Path, model: str, name: str | None = None, **kwargs: Any
) -> httpx.Response:
    return await http.post(
        f"/v1/models/{name or model}/versions", files=upload(files, model, **kwargs), headers=signer.auth_header(ADMIN)
    )


def on_disk(root: Path) -> list[str]:
    """Every path under the model directory, hidden ones included: nothing half-written may remain."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("name", ["applicants", "progression", "iris"])
async def test_an_uploaded_model_answers_what_the_estimator_answers(
    live: httpx.AsyncClient,
    signer: TokenSigner,
    files: Path,
    estimators: dict[str, tuple[Any, pd.DataFrame]],
    name: str,
) -> None:
    estimator, rows = estimators[name]
    created = await post_version(live, signer, files, name, metadata={"description": "from a notebook"})
    assert created.status_code == 201, created.text
    assert created.headers["location"] == f"/v1/models/{name}/versions/1"
    assert created.json()["metadata"]["description"] == "from a notebook"
    assert created.json()["metadata"]["source"]["file"] == f"{name}.skops"
    auth = signer.auth_header(USER)

    answer = await live.post(f"/v1/models/{name}/predict", json={"instances": records(rows)}, headers=auth)
    assert answer.status_code == 200, answer.text
    check_v1(answer.json(), estimator, rows)
    csv = await live.post(
        f"/v1/models/{name}/predict-csv", files={"file": ("rows.csv", rows.to_csv(index=False))}, headers=auth
    )
    assert csv.status_code == 200, csv.text
    check_v1(csv.json(), estimator, rows)
    metadata = (await live.get(f"/v2/models/{name}", headers=auth)).json()
    datatypes = {i["name"]: i["datatype"] for i in metadata["inputs"]}
    if set(datatypes) == set(rows.columns):  # one tensor per column
        inputs = [
            {"name": c, "datatype": datatypes[c], "shape": [len(rows), 1], "data": rows[c].tolist()}
            for c in rows.columns
        ]
    else:  # all numbers: one FP64 matrix
        (tensor,) = metadata["inputs"]
        inputs = [
            {
                "name": tensor["name"],
                "datatype": "FP64",
                "shape": list(rows.shape),
                "data": rows.to_numpy().ravel().tolist(),
            }
        ]
    v2 = await live.post(f"/v2/models/{name}/infer", json={"inputs": inputs}, headers=auth)
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    if hasattr(estimator, "classes_"):
        assert outputs["label"] == estimator.predict(rows).tolist()
        assert np.array_equal(np.reshape(outputs["probabilities"], (len(rows), -1)), estimator.predict_proba(rows))
    else:
        assert np.array_equal(outputs["value"], estimator.predict(rows))


async def test_the_management_api_needs_an_admin_token(
    live: httpx.AsyncClient, signer: TokenSigner, files: Path
) -> None:
    parts = upload(files, "applicants")
    assert (await live.post("/v1/models/applicants/versions", files=parts)).status_code == 401
    refused = await live.post("/v1/models/applicants/versions", files=parts, headers=signer.auth_header(USER))
    assert refused.status_code == 403
    assert "admin" in refused.json()["detail"]
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    for method, path, body in [
        ("GET", "/v1/models/diabetes/versions", None),
        ("DELETE", "/v1/models/diabetes/versions/1", None),
        ("PUT", "/v1/models/diabetes/aliases/production", {"version": "1"}),
        ("PUT", "/v1/models/diabetes/access", {"restricted": True}),
        ("POST", "/v2/repository/models/diabetes/unload", None),
    ]:
        answer = await live.request(method, path, json=body, headers=signer.auth_header(USER))
        assert answer.status_code == 403, (method, path)
    # Nothing changed: both versions still serve, nothing was unloaded.
    auth = signer.auth_header(USER)
    kept = await live.post("/v1/models/diabetes/versions/1/predict", json={"instances": [PIMA_ROW]}, headers=auth)
    assert kept.status_code == 200


@pytest.mark.parametrize(
    ("damage", "metadata", "reason"),
    [
        ("truncated", {}, "not a readable skops file"),
        ("garbage", {}, "not a skops file"),
        ("pickle", {}, "never loaded from an upload"),
        ("none", {"sha256": "0" * 64}, "sha256"),
        ("none", {"trust": []}, "outside skops' trusted set"),
    ],
    ids=["truncated", "garbage", "pickle", "bad-sha256", "untrusted-type"],
)
async def test_a_refused_upload_is_a_422_and_leaves_nothing_behind(
    live: httpx.AsyncClient,
    live_dir: Path,
    signer: TokenSigner,
    files: Path,
    estimators: dict[str, tuple[Any, pd.DataFrame]],
    damage: str,
    metadata: dict[str, Any],
    reason: str,
) -> None:
    good = (files / "iris.skops").read_bytes()
    pickled = io.BytesIO()
    joblib.dump(estimators["iris"][0], pickled)
    data = {"truncated": good[: len(good) // 2], "garbage": b"not a model at all", "pickle": pickled.getvalue()}
    before = on_disk(live_dir)
    answer = await post_version(live, signer, files, "iris", data=data.get(damage, good), metadata=metadata)
    assert answer.status_code == 422, answer.text
    problem = answer.json()["detail"][0]
    assert problem["loc"][:2] == ["body", "file"]
    assert reason in problem["msg"]
    assert str(live_dir) not in answer.text and "/tmp" not in answer.text  # no server paths
    assert on_disk(live_dir) == before
    listed = await live.get("/v1/models", headers=signer.auth_header(USER))
    assert [m["name"] for m in listed.json()["models"]] == ["diabetes"]


async def test_an_upload_that_unpacks_past_the_limit_is_refused_before_it_is_unpacked(
    live_dir: Path, make_settings: Callable[..., InferenceSettings], signer: TokenSigner, files: Path
) -> None:
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", b"0" * 4 * 1024 * 1024)  # 4 MiB of zeros: a few KiB packed
    before = on_disk(live_dir)
    async with serve(make_settings(model_dir=live_dir, max_model_unpacked_bytes=1024 * 1024)) as http:
        answer = await post_version(http, signer, files, "iris", data=bomb.getvalue(), sample=False)
        assert answer.status_code == 422, answer.text
        assert "unpacks to 4194304 bytes, more than the 1048576 allowed" in answer.json()["detail"][0]["msg"]
        assert "MODELGATE_INFERENCE_MAX_MODEL_UNPACKED_BYTES" in answer.text
        # The limit is on what a file unpacks to: a real model under it is served.
        assert (await post_version(http, signer, files, "iris")).status_code == 201
    assert on_disk(live_dir) != before


async def test_bad_metadata_and_missing_parts_are_422s(
    live: httpx.AsyncClient, signer: TokenSigner, files: Path
) -> None:
    auth = signer.auth_header(ADMIN)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"metadata": (None, "{not json")}, "metadata"),
        ({"file": ("a.skops", b"x"), "metadata": (None, '{"version": "../up"}')}, "version"),
        ({"file": ("a.skops", b"x"), "metadata": (None, '{"colour": "red"}')}, "colour"),
        ({"file": ("a.skops", b"")}, "empty"),
    ]
    for parts, word in cases:
        answer = await live.post("/v1/models/applicants/versions", files=parts, headers=auth)
        assert answer.status_code == 422, answer.text
        assert word in json.dumps(answer.json()), answer.text
    not_multipart = await live.post("/v1/models/applicants/versions", json={"file": "x"}, headers=auth)
    assert not_multipart.status_code == 422
    assert "multipart/form-data" in not_multipart.text
    bad_name = await live.post("/v1/models/..%2Fetc/versions", files=upload(files, "applicants"), headers=auth)
    assert bad_name.status_code in (404, 422)


async def test_versions_aliases_and_removal(
    live: httpx.AsyncClient, signer: TokenSigner, files: Path, live_dir: Path
) -> None:
    admin, user = signer.auth_header(ADMIN), signer.auth_header(USER)
    first = await post_version(live, signer, files, "applicants", metadata={"version": "2024-01"})
    assert first.status_code == 201, first.text
    again = await post_version(live, signer, files, "applicants", metadata={"version": "2024-01"})
    assert again.status_code == 409
    second = await post_version(live, signer, files, "applicants", metadata={"version": "2024-02", "default": False})
    assert second.status_code == 201, second.text
    listing = (await live.get("/v1/models/applicants/versions", headers=admin)).json()
    assert [v["version"] for v in listing["versions"]] == ["2024-01", "2024-02"]
    assert listing["default_version"] == "2024-01"  # default: False kept it
    assert listing["failed"] == []

    moved = await live.put("/v1/models/applicants/aliases/staging", json={"version": "2024-02"}, headers=admin)
    assert moved.status_code == 200
    assert moved.json() == {"name": "applicants", "alias": "staging", "version": "2024-02"}
    rows = {"instances": [{"city": "paris", "age": 30, "member": True, "income": 50_000.0}]}
    by_alias = await live.post("/v1/models/applicants/versions/staging/predict", json=rows, headers=user)
    assert by_alias.status_code == 200 and by_alias.json()["version"] == "2024-02"

    assert (await live.delete("/v1/models/applicants/versions/2024-02", headers=admin)).status_code == 409
    shadowing = await live.put("/v1/models/applicants/aliases/2024-01", json={"version": "2024-02"}, headers=admin)
    assert shadowing.status_code == 422  # an alias named like a version would be unreachable
    nowhere = await live.put("/v1/models/applicants/aliases/x", json={"version": "nope"}, headers=admin)
    assert nowhere.status_code == 404
    assert (await live.delete("/v1/models/applicants/aliases/default", headers=admin)).status_code == 409
    assert (await live.delete("/v1/models/applicants/aliases/staging", headers=admin)).status_code == 204
    assert (await live.delete("/v1/models/applicants/aliases/staging", headers=admin)).status_code == 404
    gone = await live.post("/v1/models/applicants/versions/staging/predict", json=rows, headers=user)
    assert gone.status_code == 404

    assert (await live.delete("/v1/models/applicants/versions/2024-02", headers=admin)).status_code == 204
    assert (await live.delete("/v1/models/applicants/versions/2024-02", headers=admin)).status_code == 404
    assert (await live.delete("/v1/models/applicants/versions/2024-01", headers=admin)).status_code == 204
    assert not (live_dir / "applicants").exists()
    assert (await live.get("/v1/models/applicants", headers=user)).status_code == 404


async def test_a_restricted_model_needs_its_own_scope(
    live: httpx.AsyncClient, signer: TokenSigner, files: Path
) -> None:
    created = await post_version(live, signer, files, "applicants", metadata={"restricted": True})
    assert created.status_code == 201, created.text
    assert created.json()["required_scope"] == "predict:applicants"
    rows = {"instances": [{"city": "nice", "age": 41, "member": False, "income": 31_000.0}]}
    plain = signer.auth_header(USER)
    refused = await live.post("/v1/models/applicants/predict", json=rows, headers=plain)
    assert refused.status_code == 403
    assert "predict:applicants" in refused.json()["detail"]
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert (await live.get("/v1/models/applicants", headers=plain)).status_code == 403
    listed = await live.get("/v1/models", headers=plain)
    assert [m["name"] for m in listed.json()["models"]] == ["diabetes"]
    index = await live.post("/v2/repository/index", json={}, headers=plain)
    assert {e["name"] for e in index.json()} == {"diabetes"}

    own = signer.auth_header("models:read predict:applicants")
    assert (await live.post("/v1/models/applicants/predict", json=rows, headers=own)).status_code == 200
    assert [m["name"] for m in (await live.get("/v1/models", headers=own)).json()["models"]] == ["applicants"]
    # predict:applicants alone reaches no other model.
    other = await live.post("/v1/models/diabetes/predict", json={"instances": [PIMA_ROW]}, headers=own)
    assert other.status_code == 403

    admin = signer.auth_header(ADMIN)
    opened = await live.put("/v1/models/applicants/versions/1/access", json={"restricted": False}, headers=admin)
    assert opened.json() == {"name": "applicants", "restricted": False, "restricted_versions": []}
    assert (await live.post("/v1/models/applicants/predict", json=rows, headers=plain)).status_code == 200
    closed = await live.put(
        "/v1/models/applicants/access", json={"restricted": True}, headers=signer.auth_header(ADMIN)
    )
    assert closed.status_code == 200
    assert (await live.post("/v1/models/applicants/predict", json=rows, headers=plain)).status_code == 403


async def test_the_v2_repository_extension(live: httpx.AsyncClient, signer: TokenSigner) -> None:
    admin, user = signer.auth_header(ADMIN), signer.auth_header(USER)
    index = await live.post("/v2/repository/index", headers=user)
    assert index.status_code == 200
    assert sorted((e["name"], e["version"], e["state"]) for e in index.json()) == [
        ("diabetes", "1", "READY"),
        ("diabetes", "2", "READY"),
    ]
    assert (await live.post("/v2/repository/models/diabetes/unload", headers=admin)).json() == {}
    infer = {"inputs": [{"name": "input-0", "shape": [1, 8], "datatype": "FP64", "data": list(HEALTHY_ROW.values())}]}
    unloaded = await live.post("/v2/models/diabetes/infer", json=infer, headers=user)
    assert unloaded.status_code == 404
    assert "unloaded" in unloaded.json()["error"]
    index = await live.post("/v2/repository/index", json={}, headers=admin)
    states = {(e["version"], e["state"], e["reason"]) for e in index.json()}
    assert states == {("1", "UNAVAILABLE", "unloaded"), ("2", "UNAVAILABLE", "unloaded")}
    assert (await live.post("/v2/repository/index", json={}, headers=user)).json() == []
    assert (await live.post("/v2/repository/index", json={"ready": "yes"}, headers=user)).status_code == 400
    assert (await live.post("/v2/repository/models/diabetes/load", headers=admin)).status_code == 200
    assert (await live.post("/v2/models/diabetes/infer", json=infer, headers=user)).status_code == 200
    missing = await live.post("/v2/repository/models/nothing/load", headers=admin)
    assert missing.status_code == 404 and "error" in missing.json()


def corrupt_copy(live_dir: Path, version: str) -> None:
    """A version folder whose model file does not match its recorded sha256, as a broken copy
    by hand would leave it (published by rename, as a careful operator would)."""
    staging = live_dir / "diabetes" / ".staging-by-hand"
    shutil.copytree(live_dir / "diabetes" / "2", staging)
    metadata = json.loads((staging / METADATA_FILE).read_text())
    metadata["version"] = version
    (staging / METADATA_FILE).write_text(json.dumps(metadata))
    with (staging / MODEL_FILE).open("ab") as fh:
        fh.write(b"tampered")
    staging.rename(live_dir / "diabetes" / version)
    (live_dir / "diabetes" / "@default").write_text(json.dumps({"version": version}))


async def until(check: Callable[[], Any], seconds: float = 5.0) -> None:
    """Poll ``check`` (a coroutine function returning truthy) until it holds, or fail after
    ``seconds``: the issue's bound on how long a change may take to reach a replica."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"not within {seconds} s")
        await asyncio.sleep(0.05)


async def test_two_replicas_follow_one_directory_and_a_broken_version_never_replaces_a_working_one(
    live_dir: Path, make_settings: Callable[..., InferenceSettings], signer: TokenSigner, files: Path
) -> None:
    settings = make_settings(model_dir=live_dir)  # the default poll interval
    user = signer.auth_header(USER)
    async with serve(settings) as first, serve(settings) as second:
        created = await post_version(first, signer, files, "applicants")
        assert created.status_code == 201
        rows = {"instances": [{"city": "lyon", "age": 52, "member": True, "income": 44_000.0}]}

        async def serving(replica: httpx.AsyncClient, version: str) -> bool:
            answer = await replica.post("/v1/models/applicants/predict", json=rows, headers=user)
            return answer.status_code == 200 and answer.json()["version"] == version

        await until(lambda: serving(second, "1"))
        # A second version through the first replica: both switch their default to it.
        assert (await post_version(first, signer, files, "applicants")).status_code == 201
        assert await serving(first, "2")  # the replica that took the upload, at once
        await until(lambda: serving(second, "2"))
        # An alias moved on the second: the first follows.
        admin = signer.auth_header(ADMIN)
        moved = await second.put("/v1/models/applicants/aliases/default", json={"version": "1"}, headers=admin)
        assert moved.status_code == 200
        await until(lambda: serving(first, "1"))

        corrupt_copy(live_dir, "3")

        async def reported() -> bool:
            ready = await second.get("/readyz")
            return "model_loads" in ready.json().get("checks", {})

        await until(reported)
        ready = (await second.get("/readyz")).json()
        assert ready["status"] == "ok" or ready.get("ready", True)  # degraded, still serving
        assert "diabetes/3" in ready["checks"]["model_loads"]
        answer = await second.post("/v1/models/diabetes/predict", json={"instances": [PIMA_ROW]}, headers=user)
        assert answer.json()["version"] == "2"  # @default points at 3, which failed
        versions = (await second.get("/v1/models/diabetes/versions", headers=signer.auth_header(ADMIN))).json()
        assert [f["version"] for f in versions["failed"]] == ["3"]
        assert "sha256" in versions["failed"][0]["error"]
        metrics = (await second.get("/metrics")).text
        assert 'inference_model_load_failures_total{model="diabetes",version="3"} 1.0' in metrics
        refused = await second.put("/v1/models/diabetes/aliases/production", json={"version": "3"}, headers=admin)
        assert refused.status_code == 409


def test_a_reload_reuses_what_it_holds_and_follows_every_kind_of_change(live_dir: Path) -> None:
    failures: list[Any] = []
    repository = ModelRepository(live_dir, failures.append)
    first = repository.open()
    held = first.get("diabetes", "1")
    assert repository.reload() is False  # nothing changed: nothing read
    write_alias(live_dir, "diabetes", "production", "1")
    assert repository.reload() is True
    assert repository.registry.get("diabetes", "production") is held  # reused, not reloaded
    assert first.get("diabetes", "production") is None  # the old registry is untouched

    corrupt_copy(live_dir, "3")
    assert repository.reload() is True
    assert [(f.name, f.version) for f in failures] == [("diabetes", "3")]
    assert repository.registry.default_version("diabetes") == "2"  # kept, though @default says 3
    (live_dir / "diabetes" / "3" / "extra").write_text("touch")  # retried, same error: reported once
    repository.reload()
    assert len(failures) == 1
    shutil.rmtree(live_dir / "diabetes" / "3")
    write_alias(live_dir, "diabetes", "default", "1")
    repository.reload()
    assert repository.failures == [] and repository.registry.default_version("diabetes") == "1"

    set_unloaded(live_dir, "diabetes", True)
    repository.reload()
    assert repository.registry.get("diabetes") is None and repository.unloaded() == {"diabetes"}
    set_unloaded(live_dir, "diabetes", False)
    repository.reload()
    assert repository.registry.get("diabetes", "1") is not None


def test_an_unreadable_access_file_restricts_the_whole_model(live_dir: Path) -> None:
    repository = ModelRepository(live_dir)
    repository.open()
    (live_dir / "diabetes" / ".access.json").write_text("{broken")
    repository.reload()
    model = repository.registry.get("diabetes")
    assert model is not None and repository.registry.required_scope(model) == "predict:diabetes"
    assert [f.version for f in repository.failures] == [".access.json"]
    # Folders where files belong: a pointer folder is no pointer, an access folder fails closed.
    (live_dir / "diabetes" / ".access.json").unlink()
    (live_dir / "diabetes" / ".access.json").mkdir()
    (live_dir / "diabetes" / "@staging").mkdir()
    assert repository.reload() is True
    model = repository.registry.get("diabetes")
    assert model is not None and repository.registry.required_scope(model) == "predict:diabetes"
    assert repository.registry.get("diabetes", "staging") is None
