"""``modelgate``: log in once, then predict, list and upload models, read usage and create service accounts.

Credentials: the session ``modelgate login`` stored, or a service account's
``MODELGATE_CLIENT_ID`` and ``MODELGATE_CLIENT_SECRET``. Output is a table, or JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import httpx

from . import config
from .auth import ClientCredentials, StoredRefreshToken, TokenAuth
from .client import Client
from .errors import AuthenticationError, ModelgateError, error_for

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
BASE_URL_ENV = "MODELGATE_URL"
CLIENT_ID_ENV, CLIENT_SECRET_ENV = "MODELGATE_CLIENT_ID", "MODELGATE_CLIENT_SECRET"
# Under the server's MODELGATE_INFERENCE_MAX_BATCH_ROWS (10,000 by default) and, for rows of
# ordinary width, far under its MODELGATE_INFERENCE_MAX_UPLOAD_BYTES (16 MiB).
DEFAULT_BATCH_ROWS = 5_000
MAX_BATCH_BYTES = 8 * 1024 * 1024
PROGRESS_WIDTH = 30


def _base_url(args: argparse.Namespace, session: config.Session | None) -> str:
    url = args.base_url or os.environ.get(BASE_URL_ENV) or (session.base_url if session else None)
    return str(url or DEFAULT_BASE_URL).rstrip("/")


def _client(args: argparse.Namespace) -> Client:
    session = config.load()
    base_url = _base_url(args, session)
    client_id, client_secret = os.environ.get(CLIENT_ID_ENV), os.environ.get(CLIENT_SECRET_ENV)
    if client_id and client_secret:
        return Client(base_url, auth=TokenAuth(base_url, ClientCredentials(client_id, client_secret)))
    if session is None:
        raise AuthenticationError(f"not logged in: run `modelgate login` (or set {CLIENT_ID_ENV}/{CLIENT_SECRET_ENV})")

    def keep(token: str) -> None:
        # Each refresh spends the old token: the file always holds the live one.
        config.save(replace(session, refresh_token=token))

    auth = TokenAuth(base_url, StoredRefreshToken(session.refresh_token), on_refresh_token=keep)
    return Client(base_url, auth=auth)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _emit(args: argparse.Namespace, data: Any, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if args.json:
        json.dump(data, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(_table(rows, columns))


# -- commands ------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    base_url = _base_url(args, config.load())
    username = args.username or input("username: ")
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    form = {"grant_type": "password", "username": username, "password": password}
    if args.scope:
        form["scope"] = " ".join(args.scope)
    with httpx.Client(base_url=base_url, timeout=30) as http:
        response = http.post("/auth/token", data=form)
    if response.status_code != 200:
        raise error_for(response)
    body = response.json()
    path = config.save(config.Session(base_url, username, str(body["refresh_token"])))
    result = {"base_url": base_url, "username": username, "scope": body.get("scope"), "credentials": str(path)}
    _emit(args, result, [result], ["username", "base_url", "scope"])
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    session = config.load()
    if session is not None:
        # End the session at the server too; a server that is down still loses the local copy.
        try:
            with httpx.Client(base_url=_base_url(args, session), timeout=10) as http:
                http.post("/auth/revoke", data={"token": session.refresh_token, "token_type_hint": "refresh_token"})
        except httpx.HTTPError:
            print("warning: the server was not reached; the session ends at its expiry", file=sys.stderr)
    removed = config.remove()
    _emit(args, {"logged_out": removed}, [{"logged_out": removed}], ["logged_out"])
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    with _client(args) as client:
        models = client.models()
    rows = [{**m, "features": len(m.get("features", []))} for m in models]
    _emit(args, models, rows, ["name", "default_version", "versions", "task", "features"])
    return 0


def cmd_models_upload(args: argparse.Namespace) -> int:
    with _client(args) as client:
        created = client.upload_model(
            args.name, args.file, version=args.version, sample=args.sample, description=args.description,
            trust=args.trust, default=not args.no_default, restricted=args.restricted,
        )  # fmt: skip
    row = {**created, "model_sha256": created.get("metadata", {}).get("model_sha256")}
    _emit(args, created, [row], ["name", "version", "task", "default_version", "required_scope", "model_sha256"])
    return 0


def cmd_models_versions(args: argparse.Namespace) -> int:
    with _client(args) as client:
        listing = client.model_versions(args.name)
    aliases = listing.get("aliases", {})
    rows = [
        {**v, "aliases": sorted(a for a, target in aliases.items() if target == v["version"]) or None}
        for v in listing.get("versions", [])
    ]
    _emit(args, listing, rows, ["version", "aliases", "task", "created_at", "restricted", "description"])
    if not args.json:
        for failed in listing.get("failed", []):
            print(f"warning: version {failed['version']} failed to load: {failed['error']}", file=sys.stderr)
    return 0


def cmd_models_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        client.delete_model_version(args.name, args.version)
    result = {"name": args.name, "version": args.version, "deleted": True}
    _emit(args, result, [result], ["name", "version", "deleted"])
    return 0


def cmd_models_alias(args: argparse.Namespace) -> int:
    with _client(args) as client:
        moved = client.set_alias(args.name, args.alias, args.version)
    _emit(args, moved, [moved], ["name", "alias", "version"])
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    with _client(args) as client:
        usage = client.usage(window_seconds=args.window)
    columns = ["user_sub", "requests", "errors", "client_errors", "rate_limited", "p50_ms", "p95_ms", "p99_ms"]
    _emit(args, usage, usage.get("users", []), columns)
    return 0


def cmd_clients_create(args: argparse.Namespace) -> int:
    with _client(args) as client:
        created = client.create_client(args.name, scopes=args.scope, owner_id=args.owner_id)
    if not args.json:
        print("The secret is shown only now: keep it in your secret store.", file=sys.stderr)
    _emit(args, created, [created], ["client_id", "name", "scopes", "client_secret"])
    return 0


def cmd_clients_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        page = client.clients(owner_id=args.owner_id)
    _emit(args, page, page.get("items", []), ["client_id", "name", "owner_id", "scopes", "disabled"])
    return 0


def csv_batches(file: IO[str], batch_rows: int) -> Iterator[bytes]:
    """The CSV as complete CSV documents of at most ``batch_rows`` rows (and about
    ``MAX_BATCH_BYTES``), each with the header row. Quoted newlines stay inside their row."""
    reader = csv.reader(file)
    header = next(reader, None)
    if header is None:
        return
    out, writer, rows = _new_batch(header)
    for row in reader:
        writer.writerow(row)
        rows += 1
        if rows >= batch_rows or out.tell() >= MAX_BATCH_BYTES:
            yield out.getvalue().encode()
            out, writer, rows = _new_batch(header)
    if rows:
        yield out.getvalue().encode()


def _new_batch(header: list[str]) -> tuple[io.StringIO, Any, int]:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    return out, writer, 0


class Progress:
    """A bar on stderr, by bytes of the input read; nothing when stderr is no terminal."""

    def __init__(self, total: int) -> None:
        self.total, self.done = max(total, 1), 0
        self.enabled = sys.stderr.isatty()

    def advance(self, amount: int) -> None:
        self.done = min(self.done + amount, self.total)
        if self.enabled:
            filled = PROGRESS_WIDTH * self.done // self.total
            bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
            sys.stderr.write(f"\r[{bar}] {100 * self.done // self.total:3d}%")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


@contextmanager
def _output(path: str | None) -> Iterator[IO[str]]:
    """stdout, or ``path`` written whole or not at all: a temporary file beside it, renamed at the end."""
    if path is None:
        yield sys.stdout
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            yield file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_predict(args: argparse.Namespace) -> int:
    with _client(args) as client:
        model = args.model or _only_model(client)
        progress = Progress(os.path.getsize(args.file))
        predictions: list[Any] = []
        try:
            with _output(args.output) as out, open(args.file, encoding="utf-8", newline="") as source:
                first = True
                for batch in csv_batches(source, args.batch_rows):
                    if args.json:
                        predictions.extend(client.predict_csv(model, batch))
                    else:
                        text = client.predict_csv(model, batch, as_csv=True)
                        # Every answer has the header row: keep the first one only.
                        out.write(text if first else text.partition("\n")[2])
                    first = False
                    progress.advance(len(batch))
                if args.json:
                    json.dump(predictions, out)
                    out.write("\n")
        finally:
            progress.finish()
    return 0


def _only_model(client: Client) -> str:
    names = [str(m["name"]) for m in client.models()]
    if len(names) != 1:
        raise SystemExit(f"modelgate: choose a model with --model ({', '.join(names) or 'none served'})")
    return names[0]


def _common_options(options: argparse.ArgumentParser) -> argparse.ArgumentParser:
    options.add_argument(
        "--base-url", help=f"the gateway's URL (default: ${BASE_URL_ENV}, the login's, {DEFAULT_BASE_URL})"
    )
    options.add_argument("--json", action="store_true", help="JSON output instead of a table")
    return options


def parser() -> argparse.ArgumentParser:
    common = _common_options(argparse.ArgumentParser(add_help=False))
    # Under `models`, which has the options too: no defaults here, or `models --json versions X`
    # would lose its --json to this level's default.
    again = _common_options(argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS))
    top = argparse.ArgumentParser(prog="modelgate", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    login = commands.add_parser("login", parents=[common], help="log in and store the session")
    login.add_argument("--username", "-u")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument("--scope", action="append", help="ask for this scope only (repeatable), e.g. admin")
    login.set_defaults(run=cmd_login)
    commands.add_parser("logout", parents=[common], help="end the stored session").set_defaults(run=cmd_logout)
    models = commands.add_parser("models", parents=[common], help="list the models; manage them (admin)")
    models.set_defaults(run=cmd_models)
    manage = models.add_subparsers(dest="models_command", metavar="{upload,versions,delete,alias}")
    upload = manage.add_parser("upload", parents=[again], help="upload a skops file as a new version")
    upload.add_argument("name", help="model name (created if new)")
    upload.add_argument("file", help="the estimator saved with skops.io.dump")
    upload.add_argument("--version", help="version name (default: the next integer)")
    upload.add_argument("--sample", metavar="CSV", help="rows with a header: their types, and rows it must predict")
    upload.add_argument(
        "--trust", action="append", default=[], metavar="TYPE",
        help="a type outside skops' trusted set that you reviewed (repeatable)",
    )  # fmt: skip
    upload.add_argument("--no-default", action="store_true", help="leave the default version as it is")
    upload.add_argument("--restricted", action="store_true", help="require the scope predict:NAME")
    upload.add_argument("--description", default="", metavar="TEXT", help="free text kept in the metadata")
    upload.set_defaults(run=cmd_models_upload)
    versions = manage.add_parser("versions", parents=[again], help="a model's versions and aliases")
    versions.add_argument("name")
    versions.set_defaults(run=cmd_models_versions)
    delete = manage.add_parser("delete", parents=[again], help="remove a version (no alias may point at it)")
    delete.add_argument("name")
    delete.add_argument("version")
    delete.set_defaults(run=cmd_models_delete)
    alias = manage.add_parser("alias", parents=[again], help="point an alias at a version ('default' too)")
    alias.add_argument("name")
    alias.add_argument("alias")
    alias.add_argument("version")
    alias.set_defaults(run=cmd_models_alias)

    predict = commands.add_parser("predict", parents=[common], help="predict a CSV file (header row first)")
    predict.add_argument("file")
    predict.add_argument("--model", "-m", help="the model (default: the only one served)")
    predict.add_argument("--output", "-o", help="write the predictions here (CSV; default stdout)")
    predict.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, help="rows per request")
    predict.set_defaults(run=cmd_predict)

    usage = commands.add_parser("usage", parents=[common], help="per-user request counts and latency (admin)")
    usage.add_argument("--window", type=int, default=3600, help="seconds back from now")
    usage.set_defaults(run=cmd_usage)

    clients = commands.add_parser("clients", help="service accounts (admin)").add_subparsers(
        dest="clients_command", required=True
    )
    create = clients.add_parser("create", parents=[common], help="create one; its secret is shown once")
    create.add_argument("name")
    create.add_argument("--scope", action="append", help="a scope it holds (repeatable; default predict models:read)")
    create.add_argument("--owner-id", help="the accountable user's id (default: you)")
    create.set_defaults(run=cmd_clients_create)
    listing = clients.add_parser("list", parents=[common], help="list them")
    listing.add_argument("--owner-id")
    listing.set_defaults(run=cmd_clients_list)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "batch_rows", 1) < 1:
        print("modelgate: --batch-rows must be at least 1", file=sys.stderr)
        return 2
    try:
        return int(args.run(args))
    except ModelgateError as exc:
        print(f"modelgate: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"modelgate: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
