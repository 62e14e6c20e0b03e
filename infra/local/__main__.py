"""`make run`: serves a model bundle on the local HTTP API until interrupted.

    python -m infra.local BUNDLE_DIR
Environment: PORT (default 3000), STATE_FILE (the SQLite file the state is kept in, default
.build/state.sqlite3), LOCAL_DURABILITY (process: a write answered survives the server being killed; machine:
an OS crash or power cut too, an fsync per commit), DYNAMODB_ENDPOINT (a DynamoDB-compatible endpoint instead
of SQLite), TABLE_NAME (default carryover-local), LOCAL_INSTANCES (most handler instances at once, default 64),
LOG_LEVEL (DEBUG shows the handler's structured logs and metrics), STREAM=1 (also kinesalite on KINESIS_PORT,
default 4567, and the stream function polling it; `make send` puts records).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from infra.local.quiet import quiet_unless_debug
from infra.local.signals import wait_for_stop

STATE_FILE = Path(".build/state.sqlite3")
DURABILITY = {"process": "survives the server being killed", "machine": "survives an OS crash or power cut"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    args = parser.parse_args()
    quiet_unless_debug()
    from carryover.config import ConfigurationError  # after the log level is set: Powertools reads it on import
    from carryover.errors import StoreUnavailable
    from infra.local.journal import JOURNAL, import_journal
    from infra.local.stack import STREAM_FAILURES, StackError, start_stack
    from infra.local.stream import ANSWERS_STREAM, EVENTS_STREAM, StreamError

    endpoint = os.environ.get("DYNAMODB_ENDPOINT") or None
    state_file = Path(os.environ.get("STATE_FILE") or STATE_FILE)
    table = os.environ.get("TABLE_NAME") or "carryover-local"
    durability = os.environ.get("LOCAL_DURABILITY") or "process"
    if durability not in DURABILITY:
        sys.exit(f"cannot start: LOCAL_DURABILITY={durability}: expected one of {', '.join(DURABILITY)}")
    if not endpoint and not _writable(state_file):
        sys.exit(
            f"cannot start: the state is kept in {state_file}, which cannot be written here: make "
            f"{state_file.parent} writable, or set STATE_FILE=... to keep it elsewhere"
        )
    imported = None if endpoint else import_journal(JOURNAL, state_file, table)
    if imported is not None:
        print(f"brought {imported} users' state over from {JOURNAL}, which an earlier release kept (renamed .imported)")
    try:
        stack = start_stack(
            args.bundle,
            port=int(os.environ.get("PORT") or 3000),
            dynamodb_endpoint=endpoint,
            table=table,
            instances=int(os.environ.get("LOCAL_INSTANCES") or 64),
            state_file=state_file,
            durability=durability,  # type: ignore[arg-type]  # checked above
            log=lambda line: print(line, flush=True),
            stream_port=int(os.environ.get("KINESIS_PORT") or 4567) if os.environ.get("STREAM") == "1" else None,
        )
    except (ConfigurationError, StackError, StreamError, StoreUnavailable, ValueError, OSError) as error:
        sys.exit(f"cannot start: {error}")
    url, bundle = stack.api.url, stack.settings.model_bundle
    store = stack.store
    if not endpoint:
        store += f" (a write answered {DURABILITY[durability]}); to start empty: make clean-state"
    example = _example_inputs(bundle)
    print(f"carryover serving {bundle} at {url}")
    print(f"state: {store}")
    print(f"API: {url}/docs (OpenAPI: {url}/openapi.json)")
    print("try:")
    print(f"  curl -s -X POST {url}/users/alice/predict -H 'content-type: application/json' \\")
    print(f"       -d '{{\"inputs\": {example}}}'")
    print(f"  curl -s {url}/users/alice/state")
    print(f"  curl -s {url}/model")
    if stack.stream is not None:
        print(f"stream: kinesalite at {stack.stream.endpoint}: records on {EVENTS_STREAM}, answers on {ANSWERS_STREAM}")
        print(f"  records that cannot be applied: {STREAM_FAILURES}; put records with: make send")
    print("requests (method, path, status, time, state or error):", flush=True)
    wait_for_stop()
    stack.stop()


def _example_inputs(bundle: Path) -> str:
    """A valid `inputs` for the served model: three token ids, or one row of features."""
    from carryover.manifest import Manifest

    spec = Manifest.read(bundle).input
    return "[1, 2, 3]" if spec.kind == "tokens" else "[[" + ", ".join(["0.1"] * spec.features) + "]]"


def _writable(state_file: Path) -> bool:
    """Whether the state file (and the files SQLite keeps beside it) can be created or written."""
    if state_file.exists():
        return os.access(state_file, os.W_OK) and os.access(state_file.parent, os.W_OK)
    folder = next((p for p in (state_file.parent, *state_file.parent.parents) if p.exists()), Path("/"))
    return os.access(folder, os.W_OK)


if __name__ == "__main__":
    main()
