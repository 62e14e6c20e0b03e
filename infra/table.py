"""The state table as `template.yaml` defines it, created on any DynamoDB endpoint (local or AWS)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
TABLE_RESOURCE = "StateTable"
log = logging.getLogger(__name__)


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, ...) as plain values."""


def _tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node)


_CloudFormationLoader.add_multi_constructor("!", _tag)


@functools.cache  # the template is read once a process (parsing it takes a tenth of a second)
def table_properties(template: Path = TEMPLATE) -> dict[str, Any]:
    resources = yaml.load(template.read_text(), Loader=_CloudFormationLoader)["Resources"]
    properties: dict[str, Any] = resources[TABLE_RESOURCE]["Properties"]
    return properties


def ensure_table(client: DynamoDBClient, name: str, template: Path = TEMPLATE) -> None:
    """Creates table `name` as the template defines it, unless it exists, and waits until it is active; then
    makes sure its TTL is on, with a warning where the endpoint cannot set one (some emulators)."""
    properties = table_properties(template)
    try:
        client.describe_table(TableName=name)
    except client.exceptions.ResourceNotFoundException:
        client.create_table(
            TableName=name,
            AttributeDefinitions=properties["AttributeDefinitions"],
            KeySchema=properties["KeySchema"],
            BillingMode=properties["BillingMode"],
            StreamSpecification={"StreamEnabled": True, **properties["StreamSpecification"]},
        )
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    ensure_ttl(client, name, properties["TimeToLiveSpecification"])


def ensure_ttl(client: DynamoDBClient, name: str, ttl: dict[str, Any]) -> None:
    try:
        current = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if (
            current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
            and current.get("AttributeName") == ttl["AttributeName"]
        ):
            return
        client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)  # type: ignore[arg-type]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        log.warning(
            "table %s: TTL on %s could not be set (%s); expired state is ignored on read but never deleted here",
            name,
            ttl["AttributeName"],
            code,
        )
