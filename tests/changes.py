"""The table's change stream as the archiver's event source mapping delivers it: moto's DynamoDB Streams records
(new images), in Lambda's DynamoDB event shape (binary values base64, as Lambda sends them)."""

from __future__ import annotations

import base64
from typing import Any


def _lambda_shape(value: Any) -> Any:
    ((kind, raw),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(bytes(raw)).decode()}
    if kind == "M":
        return {"M": {name: _lambda_shape(inner) for name, inner in raw.items()}}
    if kind == "L":
        return {"L": [_lambda_shape(inner) for inner in raw]}
    return {kind: raw}


def change_event(dynamodb: Any, streams: Any, table: str) -> dict[str, Any]:
    """Every change of `table` so far, as one event of the archiver's event source mapping."""
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        for record in streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]:
            change = record["dynamodb"]
            shaped = {
                key: value for key, value in change.items() if key not in ("NewImage", "ApproximateCreationDateTime")
            }
            if "NewImage" in change:
                shaped["NewImage"] = {name: _lambda_shape(value) for name, value in change["NewImage"].items()}
            shape = {"eventSource": "aws:dynamodb", "eventSourceARN": arn, "dynamodb": shaped}
            records.append({"eventID": record["eventID"], "eventName": record["eventName"], **shape})
    return {"Records": records}
