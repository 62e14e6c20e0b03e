"""The local stack: the Lambda handler behind the local HTTP API, with an embedded or given DynamoDB."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from carryover.composition import build_client, build_service
from carryover.config import Settings
from carryover.routes import create_lambda_handler
from infra.local.dynamodb import EmbeddedDynamoDB
from infra.local.server import LocalApi
from infra.table import ensure_table

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class LocalStack:
    api: LocalApi
    settings: Settings
    dynamodb: EmbeddedDynamoDB | None

    def stop(self) -> None:
        self.api.shutdown()
        self.api.server_close()
        if self.dynamodb:
            self.dynamodb.stop()


def start_stack(
    bundle: Path,
    port: int = 3000,
    dynamodb_endpoint: str | None = None,
    table: str = "carryover-local",
    instances: int = 4,
    verbose: bool = True,
    engine: str | None = None,
) -> LocalStack:
    """Starts everything in this process; `port=0` picks a free port. Creates the table if it is missing."""
    embedded = None if dynamodb_endpoint else EmbeddedDynamoDB().start()
    if embedded:
        for name, value in LOCAL_CREDENTIALS.items():
            os.environ.setdefault(name, value)
    os.environ.setdefault("AWS_DEFAULT_REGION", LOCAL_CREDENTIALS["AWS_DEFAULT_REGION"])
    endpoint = dynamodb_endpoint or (embedded.endpoint if embedded else "")
    given = {"TABLE_NAME": table, "MODEL_BUNDLE": str(bundle), "DYNAMODB_ENDPOINT": endpoint, "ENGINE": engine or ""}
    settings = Settings.from_env(os.environ | {key: value for key, value in given.items() if value})
    client = build_client(settings)
    ensure_table(client, table)
    service = build_service(settings, client=client)
    handlers = [create_lambda_handler(service, settings) for _ in range(instances)]
    api = LocalApi(handlers, port=port, verbose=verbose)
    api.start_background()
    return LocalStack(api, settings, embedded)
