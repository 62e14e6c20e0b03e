"""`make send`: puts records of a demo sequence on the local stream, then shows the answers the stream function
publishes for them.

    python -m infra.local.send --endpoint http://127.0.0.1:4567 [--user alice] [--records 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from botocore.exceptions import EndpointConnectionError
from carryover_client import Records

from infra.local.stream import ANSWERS_STREAM, EVENTS_STREAM, kinesis_client

ANSWERS_WITHIN_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--user", default="alice")
    parser.add_argument("--records", type=int, default=5)
    parser.add_argument("--features", type=int, default=8, help="features per row (the demo model's 8)")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")  # kinesalite takes any credentials
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    rows = np.random.default_rng().normal(size=(args.records * 3, args.features)).round(3)
    records = Records(EVENTS_STREAM, region="us-east-1", endpoint_url=args.endpoint)
    try:
        answers = kinesis_client(args.endpoint)
        shard = answers.list_shards(StreamName=ANSWERS_STREAM)["Shards"][0]["ShardId"]
        iterator = answers.get_shard_iterator(StreamName=ANSWERS_STREAM, ShardId=shard, ShardIteratorType="LATEST")
        puts = records.put_many(args.user, rows.tolist(), chunk=3)
    except EndpointConnectionError:
        sys.exit(f"no local stream at {args.endpoint}: start it with `make run STREAM=1`")
    print(f"put {len(puts)} records of 3 rows for {args.user} on {EVENTS_STREAM} ({puts[0].shard_id})")
    position, seen, deadline = iterator["ShardIterator"], 0, time.monotonic() + ANSWERS_WITHIN_S
    while seen < len(puts) and time.monotonic() < deadline:
        found = answers.get_records(ShardIterator=position)
        position = found["NextShardIterator"]
        for record in found["Records"]:
            answer = json.loads(record["Data"])
            if answer["user_id"] == args.user:
                seen += len(answer["records"])
                last = {name: values[-1] for name, values in answer["outputs"].items()}
                print(f"answer {answer['id']}: {len(answer['records'])} records, steps {answer['steps']}, last {last}")
        time.sleep(0.2)
    if seen < len(puts):
        sys.exit(f"{len(puts) - seen} records not answered within {ANSWERS_WITHIN_S:.0f} s: is `make run STREAM=1` up?")


if __name__ == "__main__":
    main()
