"""`make run`: serves a model bundle on the local HTTP API until interrupted.

    python -m infra.local BUNDLE_DIR
Environment: PORT (default 3000), DYNAMODB_ENDPOINT (default: an embedded DynamoDB), TABLE_NAME
(default carryover-local), LOCAL_INSTANCES (handler instances serving in parallel, default 4).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from carryover.config import ConfigurationError
from carryover.manifest import Manifest
from infra.local.stack import start_stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    args = parser.parse_args()
    try:
        port = int(os.environ.get("PORT") or 3000)
        instances = int(os.environ.get("LOCAL_INSTANCES") or 4)
        stack = start_stack(
            args.bundle,
            port=port,
            dynamodb_endpoint=os.environ.get("DYNAMODB_ENDPOINT") or None,
            table=os.environ.get("TABLE_NAME") or "carryover-local",
            instances=instances,
        )
    except (ConfigurationError, ValueError, OSError) as error:
        sys.exit(f"cannot start: {error}")
    bundle = stack.settings.model_bundle
    store = stack.settings.dynamodb_endpoint if stack.dynamodb is None else "embedded DynamoDB"
    features = ", ".join(["0.1"] * Manifest.read(bundle).input.features)
    print(f"carryover serving {bundle} at {stack.api.url} (state: {store}, table {stack.settings.table_name})")
    print("try:")
    print(f"  curl -s -X POST {stack.api.url}/users/alice/predict -H 'content-type: application/json' \\")
    print(f"       -d '{{\"inputs\": [[{features}]]}}'")
    print(f"  curl -s {stack.api.url}/users/alice/state    curl -s {stack.api.url}/model")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stack.stop()


if __name__ == "__main__":
    main()
