"""The state table as `template.yaml` defines it, created on any DynamoDB endpoint (local or AWS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
TABLE_RESOURCE = "StateTable"


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, ...) as plain values."""


def _tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


_CloudFormationLoader.add_multi_constructor("!", _tag)


def table_properties(template: Path = TEMPLATE) -> dict[str, Any]:
    resources = yaml.load(template.read_text(), Loader=_CloudFormationLoader)["Resources"]
    return resources[TABLE_RESOURCE]["Properties"]


def ensure_table(client: Any, name: str, template: Path = TEMPLATE) -> None:
    """Creates table `name` as the template defines it, unless it exists; waits until it is active."""
    try:
        client.describe_table(TableName=name)
        return
    except client.exceptions.ResourceNotFoundException:
        pass
    properties = table_properties(template)
    client.create_table(
        TableName=name,
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
        BillingMode=properties["BillingMode"],
    )
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    ttl = properties["TimeToLiveSpecification"]
    client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
