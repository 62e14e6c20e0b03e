"""The local stack: the Lambda handler behind the local HTTP API, with an embedded or given DynamoDB."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from carryover.composition import build_client, build_service
from carryover.config import Settings
from carryover.http.lambda_handler import create_lambda_handler
from infra.local.dynamodb import EmbeddedDynamoDB
from infra.local.pages import api_pages
from infra.local.server import LocalApi
from infra.table import ensure_table

LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": "us-east-1"}


class StackError(RuntimeError):
    """The stack cannot start; the message is one line saying what to do."""


@dataclass
class LocalStack:
    api: LocalApi
    settings: Settings
    dynamodb: EmbeddedDynamoDB | None

    def stop(self) -> None:
        self.api.stop()
        if self.dynamodb:
            self.dynamodb.stop()


def _store_problem(error: Exception, endpoint: str) -> StackError:
    if isinstance(error, NoCredentialsError):
        return StackError(
            f"DYNAMODB_ENDPOINT {endpoint}: no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(any values for DynamoDB Local or LocalStack)"
        )
    if isinstance(error, NoRegionError):
        return StackError(f"DYNAMODB_ENDPOINT {endpoint}: no AWS region; set AWS_DEFAULT_REGION")
    if isinstance(error, EndpointConnectionError):
        return StackError(
            f"cannot reach DYNAMODB_ENDPOINT {endpoint}: start it, or unset DYNAMODB_ENDPOINT for the embedded store"
        )
    assert isinstance(error, ClientError)
    problem = error.response.get("Error", {})
    return StackError(
        f"DYNAMODB_ENDPOINT {endpoint}: {problem.get('Code')}: {problem.get('Message')}; "
        "check the credentials and region"
    )


def start_stack(
    bundle: Path,
    port: int = 3000,
    dynamodb_endpoint: str | None = None,
    table: str = "carryover-local",
    instances: int = 64,
    engine: str | None = None,
    journal: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> LocalStack:
    """Starts everything in this process; `port=0` picks a free port. Creates the table if it is missing.
    `journal` keeps the embedded store on disk; `log` gets one line a request."""
    embedded = None if dynamodb_endpoint else EmbeddedDynamoDB(journal=journal).start()
    if embedded:
        for name, value in LOCAL_CREDENTIALS.items():
            os.environ.setdefault(name, value)
    endpoint = dynamodb_endpoint or (embedded.endpoint if embedded else "")
    given = {"TABLE_NAME": table, "MODEL_BUNDLE": str(bundle), "DYNAMODB_ENDPOINT": endpoint, "ENGINE": engine or ""}
    settings = Settings.from_env(os.environ | {key: value for key, value in given.items() if value})
    try:
        client = build_client(settings)
        ensure_table(client, table)
    except (NoCredentialsError, NoRegionError, EndpointConnectionError, ClientError) as error:
        if embedded:
            embedded.stop()
        raise _store_problem(error, endpoint) from None
    service = build_service(settings, client=client)
    api = LocalApi(
        lambda: create_lambda_handler(service, settings),
        port=port,
        most_instances=instances,
        pages=api_pages(service.manifest, settings.max_timesteps),
        log=log,
    )
    try:
        api.start_background()
    except OSError:
        if embedded:
            embedded.stop()
        raise
    return LocalStack(api, settings, embedded)
