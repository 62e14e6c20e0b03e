"""The bulk jobs over every user, as `make` runs them:

    python -m infra.bulk bootstrap --model new.keras [--served .build/bundle] [--state .build/state.sqlite3]
    python -m infra.bulk bootstrap --stack NAME [--region R]      # the deployed state machine, followed
    python -m infra.bulk compare --model new.keras [--out .build/compare]
    python -m infra.bulk export [--out .build/states.jsonl]
    python -m infra.bulk import FILE

Locally they run in this process over the local stack's store (SQLite, or DYNAMODB_ENDPOINT for export and
import) and its row log, on the same worker code the deployed bootstrap's Distributed Map children run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from carryover.bulk.worker import bootstrap_all
from carryover.bundle import ModelBundle, ServedModel
from carryover.composition import build_store, lifetimes, states_in_objects
from carryover.config import ConfigurationError, Settings
from carryover.core.bootstrap import Tally
from carryover.core.compare import compare
from carryover.manifest import Manifest
from carryover.store import StateStore
from carryover.store.dynamodb import utc_now
from carryover.store.export import export_lines, import_lines
from carryover.store.sqlite import SQLiteBlobs, SQLiteLog, SQLiteStateStore
from infra.bulk_report import comparison_report
from infra.versions import bundle_for

BUILD = Path(".build")
POLL_S = 5.0


class BulkError(RuntimeError):
    """The job cannot run; the message is one line saying what to do."""


def _settings(served: Path) -> Settings:
    given = {"TABLE_NAME": os.environ.get("TABLE_NAME", "carryover-local"), "MODEL_BUNDLE": str(served)}
    return Settings.from_env(os.environ | given)


def _kept(state: Path) -> Path:
    """The SQLite file `make run` keeps (its items and its row log), which must be there."""
    if not state.is_file():
        raise BulkError(f"no local state in {state}: `make run` keeps it there (STATE_FILE=... for another)")
    return state


def _store(settings: Settings, bundle: ModelBundle, state: Path) -> StateStore:
    """The local stack's store: DYNAMODB_ENDPOINT when set, else the SQLite file `make run` keeps."""
    if settings.dynamodb_endpoint:
        return build_store(settings, bundle, logged_rows=True)
    store = SQLiteStateStore(_kept(state), bundle.manifest.name, lifetimes(settings), utc_now)
    store.keep_states_in(SQLiteBlobs(state, utc_now), states_in_objects(bundle, settings), logged_rows=True)
    return store


def _version(model: Path, served: Manifest) -> ServedModel:
    """The new version's model, exported once (under the served model's name) and loaded with LiteRT."""
    if not model.exists():
        raise BulkError(f"MODEL={model}: no such file or directory")
    path, exported = bundle_for(model, BUILD / "versions", served.name)
    if exported:
        print(f"exported {model} into {path}", flush=True)
    loaded = ModelBundle.load(path, "litert")
    return ServedModel(loaded.manifest, loaded.engine, "next")


def _progress(what: str, total: int) -> Callable[[int, Any], None]:
    """One line as it goes (rewritten in place on a terminal, every 10% otherwise)."""
    started, shown = time.perf_counter(), [-1]

    def show(done: int, _: Any) -> None:
        rate = done / max(time.perf_counter() - started, 1e-9)
        tenth = done * 10 // max(total, 1)
        line = f"{what}: {done:,}/{total:,} users ({rate:,.0f} users/s)"
        if sys.stdout.isatty():
            print(f"\r{line}", end="" if done < total else "\n", flush=True)
        elif tenth != shown[0]:
            shown[0] = tenth
            print(line, flush=True)

    return show


def _said(tally: Tally) -> str:
    return ", ".join(f"{count:,} {status}" for status, count in sorted(tally.users.items())) or "no users"


def bootstrap_local(args: argparse.Namespace) -> None:
    settings = _settings(args.served)
    served = ModelBundle.load(args.served, "litert")
    model = _version(args.model, served.manifest)
    store = _store(settings, served, args.state)
    log = SQLiteLog(_kept(args.state), served.manifest.name)
    users = log.users()
    print(f"bootstrapping {model.manifest.name} {model.manifest.version} for {len(users):,} users of the row log")
    started = time.perf_counter()
    tally = bootstrap_all(model, store, log, utc_now, settings.conflict_retries, _progress("bootstrap", len(users)))
    seconds = time.perf_counter() - started
    print(
        f"done in {seconds:.1f} s: {_said(tally)}; {tally.rows:,} rows run ({tally.rows / max(seconds, 1e-9):,.0f}/s)"
    )
    if tally.users.get("behind"):
        print("users written to meanwhile beyond what the log holds are left: run make bootstrap again")


def bootstrap_deployed(args: argparse.Namespace) -> None:
    """Starts the stack's bootstrap state machine over every partition of its row log, and follows it."""
    from infra.bootstrap_run import follow, start

    execution = start(args.stack, args.region)
    print(f"started {execution}; following it every {POLL_S:.0f} s", flush=True)
    follow(execution, args.region, POLL_S)


def compare_local(args: argparse.Namespace) -> None:
    _settings(args.served)  # the served bundle checked first: one line when there is none
    served = ModelBundle.load(args.served, "litert")
    new = _version(args.model, served.manifest)
    log = SQLiteLog(_kept(args.state), served.manifest.name)
    users = log.users()
    print(f"comparing {served.manifest.version} with {new.manifest.version} over {len(users):,} users' logged rows")
    old = ServedModel(served.manifest, served.engine, "answers")
    found = compare(old, new, log, _progress("compare", len(users)))
    report, chart = comparison_report(found, old.manifest, new.manifest, args.out)
    print(f"report: {report}; chart: {chart}")


def export_local(args: argparse.Namespace) -> None:
    settings = _settings(args.served)
    bundle = ModelBundle.load(args.served, "litert")
    manifests = [model.manifest for model in bundle.models]
    store = _store(settings, bundle, args.state)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with args.out.open("w") as out:
        for line in export_lines(store, bundle.manifest.name, manifests):
            out.write(line + "\n")
            count += 1
    print(f"exported {count:,} users' states to {args.out}")


def import_local(args: argparse.Namespace) -> None:
    if not args.file.is_file():
        raise BulkError(f"FILE={args.file}: no such file; give a file `make export-states` wrote")
    settings = _settings(args.served)
    bundle = ModelBundle.load(args.served, "litert")
    args.state.parent.mkdir(parents=True, exist_ok=True)
    args.state.touch()
    with args.file.open() as lines:
        found = import_lines(_store(settings, bundle, args.state), (line for line in lines if line.strip()))
    print(f"imported {found.written:,} users; {found.existing:,} already had a state and were left as they are")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    jobs = parser.add_subparsers(dest="job", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--served", type=Path, default=BUILD / "bundle", help="the bundle make run serves")
    common.add_argument("--state", type=Path, default=Path(os.environ.get("STATE_FILE", BUILD / "state.sqlite3")))
    boot = jobs.add_parser("bootstrap", parents=[common])
    boot.add_argument("--model", type=Path)
    boot.add_argument("--stack")
    boot.add_argument("--region")
    against = jobs.add_parser("compare", parents=[common])
    against.add_argument("--model", type=Path, required=True)
    against.add_argument("--out", type=Path, default=BUILD / "compare")
    jobs.add_parser("export", parents=[common]).add_argument("--out", type=Path, default=BUILD / "states.jsonl")
    jobs.add_parser("import", parents=[common]).add_argument("file", type=Path)
    args = parser.parse_args()
    runs = {"compare": compare_local, "export": export_local, "import": import_local}
    try:
        if args.job == "bootstrap":
            if not args.stack and not args.model:
                raise BulkError("make bootstrap: give MODEL=new.keras (the local stack) or STACK=name (a deployed one)")
            (bootstrap_deployed if args.stack else bootstrap_local)(args)
        else:
            runs[args.job](args)
    except (BulkError, ConfigurationError) as error:
        print(f"{args.job}: {error}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
