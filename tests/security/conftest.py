"""Fixtures of the security suite (issue 10), beside the session stack of ``tests/conftest.py``.

- ``security_stack``: a second stack, started only when a test asks for it (fuzzing and the
  login-timing comparison), with the rate limits out of the way (a fuzzer's 429 proves nothing)
  and bcrypt at cost 10, where a login's time is the hash's and a timing oracle would show.
- ``report``: what each attack class sent and saw; printed at the end of the run (the figures
  SECURITY.md quotes) and written to ``$MODELGATE_SECURITY_REPORT`` when that is set.
- ``test_secrets.py`` runs last, whatever the order of collection: it searches what every
  other test left behind.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelgate_shared.stack import Stack, running_stack
from modelgate_shared.testing import training_data_source

from ..conftest import AUTH_TRUSTED_PROXIES, PROXY_ADDRESS, SECRETS, STACKS

SECURITY_ADMIN_USERNAME = "security-admin"
SECURITY_ADMIN_PASSWORD = f"admin-{uuid.uuid4().hex}"
SECURITY_BCRYPT_ROUNDS = 10
# Far beyond anything the fuzzer or the timing test sends in a run.
UNLIMITED = "1000000/minute"


@pytest.fixture(scope="session")
def security_stack() -> Iterator[Stack]:
    extra_env = {
        "MODELGATE_AUTH_BCRYPT_ROUNDS": str(SECURITY_BCRYPT_ROUNDS),
        "MODELGATE_ADMIN_USERNAME": SECURITY_ADMIN_USERNAME,
        "MODELGATE_ADMIN_PASSWORD": SECURITY_ADMIN_PASSWORD,
        "MODELGATE_GATEWAY_RATE_LIMIT_DEFAULT": UNLIMITED,
        "MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_IP": UNLIMITED,
        "MODELGATE_GATEWAY_RATE_LIMIT_LOGIN_USERNAME": UNLIMITED,
        "MODELGATE_GATEWAY_LOG_FLUSH_INTERVAL_SECONDS": "0.1",
        "MODELGATE_GATEWAY_TRUSTED_PROXIES": f'["{PROXY_ADDRESS}/32"]',
        "MODELGATE_AUTH_TRUSTED_PROXIES": AUTH_TRUSTED_PROXIES,
    }
    SECRETS.add("password", SECURITY_ADMIN_PASSWORD)
    with running_stack(training_data=training_data_source(), extra_env=extra_env) as running:
        STACKS.append(running)
        yield running


class SecurityReport:
    """Counts per attack class: requests sent, and the statuses they got."""

    def __init__(self) -> None:
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.notes: dict[str, list[str]] = defaultdict(list)
        self.details: dict[str, dict[str, object]] = defaultdict(dict)  # in the JSON file only

    def saw(self, attack: str, status: int | str, count: int = 1) -> None:
        self.statuses[attack][str(status)] += count

    def note(self, attack: str, text: str) -> None:
        self.notes[attack].append(text)

    def detail(self, attack: str, key: str, value: object) -> None:
        self.details[attack][key] = value

    def as_dict(self) -> dict[str, dict[str, object]]:
        attacks = sorted({*self.statuses, *self.notes})
        return {
            attack: {
                "requests": sum(self.statuses[attack].values()),
                "statuses": dict(sorted(self.statuses[attack].items())),
                "notes": self.notes[attack],
            }
            for attack in attacks
        }

    def as_json(self) -> dict[str, object]:
        return {attack: {**entry, **self.details.get(attack, {})} for attack, entry in self.as_dict().items()}

    def lines(self) -> list[str]:
        out = []
        for attack, entry in self.as_dict().items():
            statuses = ", ".join(f"{s}: {n}" for s, n in entry["statuses"].items())
            out.append(f"{attack}: {entry['requests']} requests ({statuses or '-'})")
            out.extend(f"    {note}" for note in entry["notes"])
        return out


REPORT = SecurityReport()


@pytest.fixture(scope="session")
def report() -> SecurityReport:
    return REPORT


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The secrets search goes last: it checks what every other test sent."""
    last = [item for item in items if item.path.name == "test_secrets.py"]
    if last:
        items[:] = [item for item in items if item.path.name != "test_secrets.py"] + last


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORT.statuses and not REPORT.notes:
        return
    terminalreporter.section("security suite: requests per attack class")
    for line in REPORT.lines():
        terminalreporter.write_line(line)
    if target := os.environ.get("MODELGATE_SECURITY_REPORT"):
        Path(target).write_text(json.dumps(REPORT.as_json(), indent=2) + "\n")
        terminalreporter.write_line(f"(written to {target})")
