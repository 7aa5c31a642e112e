"""The rollout scenario's pure pieces: the upload body inference's own form reader accepts and
registers, the admin the bench's stack creates, and how rounds are summarised and reported."""

import asyncio
import json
from pathlib import Path

import orjson
from inference_service.json_body import read_form
from inference_service.model_store import load_registry
from inference_service.registration import register_upload
from inference_service.routes.v1 import predict_json_body
from starlette.datastructures import UploadFile
from starlette.requests import Request

from bench import byo_models, rollout, stack_setup
from bench.cli import parse_args
from bench.report import rollout_markdown, rollout_text


def parts(body: rollout.UploadBody) -> dict[str, bytes]:
    """The body as the upload route reads it (``read_form``, the same limits)."""
    received = False

    async def receive() -> dict[str, object]:
        nonlocal received
        if received:
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body.content, "more_body": False}

    async def read() -> dict[str, bytes]:
        scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
                 "headers": [(b"content-type", body.content_type.encode())]}  # fmt: skip
        form = await read_form(Request(scope, receive), 50 * 1024 * 1024, parts="", max_files=3, max_fields=5)
        try:
            out = {}
            for key, value in form.items():
                out[key] = await value.read() if isinstance(value, UploadFile) else value.encode()
            return out
        finally:
            await form.close()

    return asyncio.run(read())


def test_upload_body_is_read_and_registered_as_the_next_default_version(tmp_path: Path) -> None:
    body = rollout.mixed_upload()
    assert body.content_type.startswith("multipart/form-data; boundary=")
    read = parts(body)
    # The skops zip carries its write time, so only the sample is byte-equal to a fresh build.
    assert read["sample"] == byo_models.files(rollout.SPEC)[1] and read["file"][:4] == b"PK\x03\x04"
    assert json.loads(read["metadata"])["default"] is True
    # The same body twice: the service names the versions, so each round adds the next one.
    for _ in range(2):
        register_upload(tmp_path, read["file"], name=rollout.MODEL, sample=read["sample"], make_default=True)
    registry = load_registry(tmp_path)
    assert registry.versions(rollout.MODEL) == ["1", "2"] and registry.default_version(rollout.MODEL) == "2"
    model = registry.get(rollout.MODEL)
    assert model is not None
    # Types read from the sample part: the mixed columns, not a float matrix.
    assert [c.dtype for c in model.schema.columns] == ["category", "integer", "boolean", "number"]
    answer = orjson.loads(predict_json_body(model, byo_models.v1_predict(rollout.SPEC, 1), 10))
    estimator, _ = rollout.SPEC.build()
    assert answer["version"] == "2"
    assert [p["label"] for p in answer["predictions"]] == estimator.predict(rollout.SPEC.rows(1)).tolist()


def test_the_bench_admin_passes_the_services_settings_checks(tmp_path: Path) -> None:
    admin = stack_setup.new_user("bench-admin")
    stack = stack_setup.make_stack(tmp_path, admin=admin)
    assert stack.extra_env["MODELGATE_ADMIN_USERNAME"] == admin.username
    stack.check_settings()  # raises naming any setting auth would refuse (e.g. a short password)
    assert "MODELGATE_ADMIN_USERNAME" not in stack_setup.make_stack(tmp_path).extra_env


def test_rounds_are_summarised_as_median_and_max() -> None:
    rounds = tuple(
        rollout.Round(str(v), upload_s=u, served_s=s, first_predict_new=first, predicts=p, stale=stale)
        for v, u, s, first, p, stale in [
            (2, 0.100, 0.110, True, 1, {}),
            (3, 0.300, 0.330, True, 1, {}),
            (4, 0.200, 0.250, False, 3, {"old": 2}),
        ]
    )
    result = rollout.Rollout(rounds, upload_bytes=90_000, cpu_s={"inference": 0.3})
    data = result.to_dict()
    assert data["upload_ms"] == {"median": 200.0, "max": 300.0, "min": 100.0}
    assert data["served_ms"] == {"median": 250.0, "max": 330.0, "min": 110.0}
    assert data["after_upload_response_ms"] == {"median": 30.0, "max": 50.0, "min": 10.0}
    assert data["first_predict_new"] == 2 and data["cpu_ms_per_round"] == {"inference": 100.0}
    assert rounds[2].to_dict()["stale"] == {"old": 2} and data["rounds"] == [r.to_dict() for r in rounds]
    text = rollout_text(result).splitlines()
    assert text[2].split()[-4:] == ["3", "200.0", "300.0", "100.0"]
    assert text[-1].startswith("first predict after the upload response answered from the new version in 2 of 3")
    markdown = rollout_markdown(result).splitlines()
    assert markdown[3] == "| upload sent to first answer from the new version | 3 | 250.0 | 330.0 | 110.0 |"


def test_rollout_is_selectable() -> None:
    options, _ = parse_args(["--only", "login_storm,rollout,byo_mixed"])
    assert options.scenarios == ("byo_mixed", "rollout", "login_storm")
