"""The CLI's stored session: the base URL, the username and the live refresh token, in
``credentials.json`` in the user's config folder (folder 0700, file 0600: only its owner reads it)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import platformdirs

CONFIG_DIR_ENV = "MODELGATE_CONFIG_DIR"
CREDENTIALS_FILE = "credentials.json"


def config_dir() -> Path:
    override = os.environ.get(CONFIG_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_config_dir("modelgate"))


@dataclass(frozen=True, slots=True)
class Session:
    base_url: str
    username: str
    refresh_token: str

    def __repr__(self) -> str:
        return f"Session(base_url={self.base_url!r}, username={self.username!r})"


def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def load() -> Session | None:
    try:
        data = json.loads(credentials_path().read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    fields = ("base_url", "username", "refresh_token")
    if not isinstance(data, dict) or not all(isinstance(data.get(f), str) for f in fields):
        return None
    return Session(**{f: data[f] for f in fields})


def save(session: Session) -> Path:
    """Write the file whole or not at all: a temporary file of mode 0600, then a rename."""
    folder = config_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # mkdir leaves an existing folder's mode alone
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".credentials-", suffix=".tmp")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(asdict(session), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, folder / CREDENTIALS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / CREDENTIALS_FILE


def remove() -> bool:
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True
