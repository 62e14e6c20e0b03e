"""`make bootstrap STACK=name`: the deployed stack's bootstrap state machine started over every partition of its row
log, and followed until it ends (one line every few seconds: the map run's items succeeded, failed and pending)."""

from __future__ import annotations

import json
import time
from typing import Any

from carryover.archive.layout import partitions

MANIFEST_KEY = "bootstrap/partitions.json"
OUTPUTS = ("BootstrapStateMachineArn", "LogBucketName")


class RunError(RuntimeError):
    """The run cannot start or failed; one line saying what to do."""


def _client(name: str, region: str | None) -> Any:
    from botocore.session import Session

    return Session().create_client(name, region_name=region)


def stack_outputs(stack: str, region: str | None) -> dict[str, str]:
    found = _client("cloudformation", region).describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    outputs = {output["OutputKey"]: output["OutputValue"] for output in found}
    missing = [name for name in OUTPUTS if name not in outputs]
    if missing:
        raise RunError(f"stack {stack} has no output {', '.join(missing)}: deploy this release (make deploy) first")
    return outputs


def start(stack: str, region: str | None) -> str:
    """Writes the list of partitions the map reads, starts an execution; its ARN."""
    outputs = stack_outputs(stack, region)
    bucket = outputs["LogBucketName"]
    items = [{"partition": partition} for partition in partitions()]
    _client("s3", region).put_object(Bucket=bucket, Key=MANIFEST_KEY, Body=json.dumps(items).encode())
    given = {"bucket": bucket, "manifest": MANIFEST_KEY, "prefix": "log/"}
    started = _client("stepfunctions", region).start_execution(
        stateMachineArn=outputs["BootstrapStateMachineArn"], input=json.dumps(given)
    )
    execution: str = started["executionArn"]
    return execution


def follow(execution: str, region: str | None, every_s: float) -> None:
    states = _client("stepfunctions", region)
    while True:
        status = states.describe_execution(executionArn=execution)["status"]
        runs = states.list_map_runs(executionArn=execution).get("mapRuns", [])
        counts = states.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"] if runs else {}
        done, total, failed = (counts.get(name, 0) for name in ("succeeded", "total", "failed"))
        print(f"{status}: {done} of {total} batches done, {failed} failed", flush=True)
        if status != "RUNNING":
            break
        time.sleep(every_s)
    if status != "SUCCEEDED":
        raise RunError(f"the bootstrap ended {status}: see the execution {execution} in the Step Functions console")
