"""Login responses do not tell an unknown username from a wrong password: not in the answer,
not in its time.

Auth checks an unknown username's password against a dummy hash of the same cost, so both
failures cost one bcrypt verification. The comparison runs on ``security_stack``, at bcrypt cost
10 (about 60 ms a hash here): there the hash is most of a login's time, and a missing dummy hash
would halve the unknown-user median. At the session stack's cost 4 (about 1 ms) the database
round trips dominate and the same defect would hide inside a 25 % margin.

This is the suite's only timing comparison: two medians from one run, interleaved (each round
sends one of each kind, in alternating order) so a machine that slows down slows both alike.
Each attempt comes from an address of its own, and the wrong passwords go to several users, so no
login limit is ever what answers (the stack's limits are raised as well).
"""

from __future__ import annotations

import statistics
import time
import uuid

import httpx
from modelgate_shared.stack import Stack

from ..conftest import PROXY_ADDRESS, SECRETS, fresh_client_ip, sign_up
from .conftest import SECURITY_BCRYPT_ROUNDS, SecurityReport

SAMPLES = 24  # of each kind
USERS = 4
WARM_UP = 2  # rounds not counted: first connections, first hashes
MAX_MEDIAN_RATIO = 1.25
# Headers whose values differ from one response to the next whatever the outcome.
VOLATILE_HEADERS = {"date", "x-request-id", "ratelimit-remaining", "ratelimit-reset"}


async def attempt(client: httpx.AsyncClient, username: str) -> tuple[httpx.Response, float]:
    password = f"wrong-{uuid.uuid4().hex}"
    SECRETS.add("password", password)
    form = {"grant_type": "password", "username": username, "password": password}
    started = time.perf_counter()
    response = await client.post("/auth/token", data=form, headers={"X-Forwarded-For": fresh_client_ip()})
    return response, time.perf_counter() - started


def answer(response: httpx.Response) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
    headers = tuple(sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE_HEADERS))
    return response.status_code, response.content, headers


async def test_unknown_user_and_wrong_password_look_the_same(security_stack: Stack, report: SecurityReport) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=PROXY_ADDRESS)
    async with httpx.AsyncClient(base_url=security_stack.gateway_url, transport=transport, timeout=30) as client:
        users = [(await sign_up(client))[0] for _ in range(USERS)]
        times: dict[str, list[float]] = {"unknown user": [], "wrong password": []}
        answers: dict[str, set[tuple[int, bytes, tuple[tuple[str, str], ...]]]] = {k: set() for k in times}
        for n in range(WARM_UP + SAMPLES):
            kinds = [("unknown user", f"nobody-{uuid.uuid4().hex[:12]}"), ("wrong password", users[n % USERS])]
            for kind, username in kinds if n % 2 else reversed(kinds):
                response, seconds = await attempt(client, username)
                assert response.status_code == 400, response.text
                if n >= WARM_UP:
                    times[kind].append(seconds)
                    answers[kind].add(answer(response))
                    report.saw("login: unknown user vs wrong password", f"{response.status_code} ({kind})")

    # One answer for both, byte for byte, headers included.
    assert len(answers["unknown user"]) == 1, answers["unknown user"]
    assert answers["unknown user"] == answers["wrong password"], answers
    _, body, _ = next(iter(answers["unknown user"]))
    assert b"invalid_grant" in body, body

    medians = {kind: statistics.median(values) for kind, values in times.items()}
    ratio = max(medians.values()) / min(medians.values())
    report.note(
        "login: unknown user vs wrong password",
        f"bcrypt cost {SECURITY_BCRYPT_ROUNDS}, {SAMPLES} of each: median "
        + ", ".join(f"{kind} {1000 * m:.1f} ms" for kind, m in medians.items())
        + f"; ratio {ratio:.2f} (limit {MAX_MEDIAN_RATIO})",
    )
    assert ratio <= MAX_MEDIAN_RATIO, (medians, times)
    # The comparison means something only if the hash dominates: at cost 10 it is tens of ms.
    assert min(medians.values()) > 0.02, medians
