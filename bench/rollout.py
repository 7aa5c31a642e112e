"""The ``rollout`` scenario: how long from uploading a new model version to the first
prediction that version serves, through the gateway.

Each round posts the same multipart body (the mixed-type pipeline of ``byo_models``, its sample
and ``{"default": true}``) to ``POST /v1/models/<name>/versions`` with an admin token, so the
service names the next version; then predicts on the model's default, back to back, until an
answer's ``version`` is the one just uploaded. The replica taking an upload reloads before it
answers, so the first predict after the upload's response should already be the new version:
each round records whether it was.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx

from . import byo_models

# A model of its own: its versions pile up (one per round) without touching the byo_* models.
MODEL = "rollout"
SPEC = byo_models.MODELS["byo_mixed"]
MIN_ROUNDS = 5
# Rounds beyond --duration are not run past this: every version stays loaded in the service.
MAX_ROUNDS = 50
# A round whose new version is not served by then has failed (other replicas poll every second).
GIVE_UP_SECONDS = 30.0
JSON = "application/json"
# The rows of the table, and their keys in latest.json.
UPLOAD = "upload request alone"
SERVED = "upload sent to first answer from the new version"
AFTER = "  of which: upload response to that answer"
JSON_KEYS = {UPLOAD: "upload_ms", SERVED: "served_ms", AFTER: "after_upload_response_ms"}


class RolloutError(RuntimeError):
    """A round cannot complete (refused upload, no new version served); the message says why."""


@dataclass(frozen=True)
class UploadBody:
    content: bytes
    content_type: str


def upload_body(model_file: bytes, sample_csv: bytes | None, metadata: Mapping[str, object]) -> UploadBody:
    """The multipart/form-data body of ``POST /v1/models/<name>/versions``, encoded once by
    httpx's own multipart encoder so every round sends the same bytes."""
    files: dict[str, tuple[str, bytes, str]] = {"file": ("model.skops", model_file, "application/octet-stream")}
    if sample_csv is not None:
        files["sample"] = ("sample.csv", sample_csv, "text/csv")
    request = httpx.Request("POST", "http://upload.invalid/", data={"metadata": json.dumps(metadata)}, files=files)
    return UploadBody(request.read(), request.headers["Content-Type"])


def mixed_upload() -> UploadBody:
    """The mixed-type pipeline as an upload that becomes the model's default."""
    model_file, sample_csv = byo_models.files(SPEC)
    return upload_body(model_file, sample_csv, {"default": True, "description": SPEC.description})


@dataclass(frozen=True)
class Round:
    version: str
    upload_s: float  # the upload request alone
    served_s: float  # from sending the upload to the first 200 answer from the new version
    first_predict_new: bool  # the first predict after the upload's response was the new version
    predicts: int  # predict requests sent after the upload's response, the one answering new included
    # Answers before the new version: "old" for a 200 from an earlier version, else the status.
    stale: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "upload_ms": round(1000 * self.upload_s, 3),
            "served_ms": round(1000 * self.served_s, 3),
            "first_predict_new": self.first_predict_new,
            "predicts": self.predicts,
            "stale": dict(self.stale),
        }


def run_round(client: httpx.Client, body: UploadBody, predict_body: bytes, model: str = MODEL) -> Round:
    """One upload and the predicts that follow it. ``client`` carries the base URL and the
    admin token; the upload and the predicts share its keep-alive connection."""
    started = time.perf_counter()
    answer = client.post(f"/v1/models/{model}/versions", content=body.content,
                         headers={"Content-Type": body.content_type})  # fmt: skip
    uploaded = time.perf_counter()
    if answer.status_code != 201:
        raise RolloutError(f"upload -> {answer.status_code}: {answer.text[:500]}")
    version = str(answer.json()["version"])
    stale: dict[str, int] = {}
    first_new: bool | None = None
    predicts = 0
    while True:
        reply = client.post(f"/v1/models/{model}/predict", content=predict_body, headers={"Content-Type": JSON})
        predicts += 1
        new = reply.status_code == 200 and str(reply.json().get("version")) == version
        first_new = new if first_new is None else first_new
        if new:
            return Round(version, uploaded - started, time.perf_counter() - started, first_new, predicts, stale)
        kind = "old" if reply.status_code == 200 else str(reply.status_code)
        stale[kind] = stale.get(kind, 0) + 1
        if time.perf_counter() - uploaded > GIVE_UP_SECONDS:
            raise RolloutError(
                f"version {version} not served {GIVE_UP_SECONDS:.0f} s after its upload; last answer "
                f"{reply.status_code}: {reply.text[:300]}"
            )


@dataclass(frozen=True)
class Rollout:
    rounds: tuple[Round, ...]
    upload_bytes: int
    # Server CPU seconds per process group over the measured rounds (uploads and predicts).
    cpu_s: Mapping[str, float] = field(default_factory=dict)

    def rows(self) -> list[tuple[str, list[float]]]:
        return [
            (UPLOAD, [r.upload_s for r in self.rounds]),
            (SERVED, [r.served_s for r in self.rounds]),
            # The new version's first predictions (a cold model) and any stale answers before them.
            (AFTER, [r.served_s - r.upload_s for r in self.rounds]),
        ]

    @property
    def first_new(self) -> int:
        return sum(r.first_predict_new for r in self.rounds)

    def summary(self) -> str:
        return (
            f"first predict after the upload response answered from the new version in {self.first_new} "
            f"of {len(self.rounds)} rounds; {self.upload_bytes:,}-byte upload"
        )

    def to_dict(self) -> dict[str, object]:
        ms = {JSON_KEYS[label]: _stats(values) for label, values in self.rows()}
        per_round = {k: round(1000 * v / len(self.rounds), 3) for k, v in self.cpu_s.items()} if self.rounds else {}
        return {
            "model": MODEL,
            "upload_bytes": self.upload_bytes,
            "rounds": [r.to_dict() for r in self.rounds],
            **ms,
            "first_predict_new": self.first_new,
            "cpu_ms_per_round": per_round,
        }


ROLLOUT_HEADERS = ("rollout (gateway, admin token)", "rounds", "median ms", "max ms", "min ms")


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": round(1000 * statistics.median(values), 3),
        "max": round(1000 * max(values), 3),
        "min": round(1000 * min(values), 3),
    }


def table_rows(rollout: Rollout) -> list[list[str]]:
    rows = []
    for label, values in rollout.rows():
        s = _stats(values)
        rows.append([label, str(len(values)), *(f"{s[k]:.1f}" if s else "-" for k in ("median", "max", "min"))])
    return rows
