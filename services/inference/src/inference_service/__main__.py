"""``python -m inference_service``: the service's offline commands.

    models add FILE --name NAME [--version V] [--sample CSV] [--description TEXT]
                    [--trust TYPE ...] [--trust-pickle] [--no-default] [--restricted]
    models list
    models remove NAME --version V
    models alias NAME ALIAS VERSION
    train [...]            (the same as ``python -m inference_service.train``)

The model directory is ``--model-dir`` or ``MODELGATE_INFERENCE_MODEL_DIR``. Each command
prints what it did and exits 0, or prints why not to stderr and exits 1, having written nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from modelgate_shared.settings import load_settings

from . import train
from .model_store import ModelLoadError, load_registry, remove_version, write_alias
from .registration import PICKLE_WARNING, RegistrationError, add_model
from .settings import ModelDirSettings

PROG = "python -m inference_service"


def _model_dir(args: argparse.Namespace) -> Path:
    if args.model_dir is not None:
        return Path(args.model_dir)
    return load_settings(ModelDirSettings).model_dir


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="modelgate inference: offline commands")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("train", help="train the default model (see python -m inference_service.train --help)")
    models = commands.add_parser("models", help="register, list and remove models in the model directory")
    actions = models.add_subparsers(dest="action", required=True)

    def with_dir(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--model-dir", help="the model directory (default: MODELGATE_INFERENCE_MODEL_DIR)")
        return sub

    add = with_dir(actions.add_parser("add", help="register a fitted scikit-learn estimator or pipeline"))
    add.add_argument("file", type=Path, help="the estimator saved with skops.io.dump (or a pickle: --trust-pickle)")
    add.add_argument("--name", required=True, help="model name (the URL's {name})")
    add.add_argument("--version", help="version name (default: the next integer)")
    add.add_argument(
        "--sample",
        type=Path,
        help="a CSV of input rows with a header: column types are read from it, the model must predict it, "
        "and each column is tried with a missing value to learn whether the model takes one",
    )
    add.add_argument("--description", default="", help="free text kept in the metadata")
    add.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="TYPE",
        help="a type outside skops' trusted set that you reviewed and trust (repeat; recorded in the metadata)",
    )
    add.add_argument(
        "--trust-pickle",
        action="store_true",
        help=f"accept a pickle or joblib FILE and convert it to skops (the served file is never a pickle). "
        f"Dangerous: {PICKLE_WARNING}",
    )
    add.add_argument("--no-default", action="store_true", help="add the version without making it the default")
    add.add_argument(
        "--restricted",
        action="store_true",
        help="the version requires the scope predict:NAME (plain predict is refused)",
    )
    with_dir(actions.add_parser("list", help="every model, its versions and aliases"))
    remove = with_dir(actions.add_parser("remove", help="remove one version of a model"))
    remove.add_argument("name", help="model name")
    remove.add_argument("--version", required=True, help="the version to remove")
    alias = with_dir(actions.add_parser("alias", help="point an alias (default, production, ...) at a version"))
    alias.add_argument("name", help="model name")
    alias.add_argument("alias", help="alias name; 'default' moves the default version")
    alias.add_argument("version", help="the version it points at")
    return parser.parse_args(argv)


def _add(args: argparse.Namespace) -> None:
    model = add_model(
        _model_dir(args),
        args.file,
        name=args.name,
        version=args.version,
        sample=args.sample,
        description=args.description,
        trust=args.trust,
        trust_pickle=args.trust_pickle,
        make_default=not args.no_default,
        restricted=args.restricted,
    )
    meta = model.metadata
    kind = meta.task + (f", classes {list(meta.classes)}" if meta.classes else "")
    print(f"added {model.name} version {model.version} ({kind}) -> {model.path}")
    for column in model.schema.columns:
        extra = f" {list(column.categories)}" if column.categories else ""
        print(f"  {column.name}: {column.dtype}{extra}{' (nullable)' if column.nullable else ''}")
    if meta.trusted_types:
        print(f"  trusted types: {', '.join(meta.trusted_types)}")


def _list(args: argparse.Namespace) -> None:
    registry = load_registry(_model_dir(args))
    for name in registry.names():
        aliases = registry.aliases(name)
        for model in registry.models(name):
            version = model.version
            pointers = " ".join(f"@{a}" for a, v in sorted(aliases.items()) if v == version)
            scope = registry.required_scope(model)
            notes = " ".join(n for n in (pointers, f"requires {scope}" if scope else "") if n)
            print(f"{name}\t{version}\t{model.metadata.task}\t{len(model.features)} columns\t{notes}".rstrip())


def _remove(args: argparse.Namespace) -> None:
    model_dir = _model_dir(args)
    remove_version(model_dir, args.name, args.version)
    print(f"removed {args.name} version {args.version} from {model_dir}")


def _alias(args: argparse.Namespace) -> None:
    model_dir = _model_dir(args)
    write_alias(model_dir, args.name, args.alias, args.version)
    print(f"{args.name} @{args.alias} -> version {args.version}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        return train.main(argv[1:])
    args = parse_args(argv)
    action = {"add": _add, "list": _list, "remove": _remove, "alias": _alias}[args.action]
    try:
        action(args)
    except (RegistrationError, ModelLoadError, FileExistsError, ValueError, OSError) as exc:
        print(f"models {args.action} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
