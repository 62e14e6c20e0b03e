"""`make smoke URL=...`: checks a deployed API end to end with the client, one line a step.

    python -m examples.smoke URL [--region REGION] [--auth iam|none]

IAM (the template's default AuthMode) signs with your AWS credentials for the region in the URL. It streams
a few steps for a throwaway user, checks that the state carried over, and deletes it.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid

from carryover_client import ApiError, Client, SigV4


def region_of(url: str) -> str | None:
    found = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", url)
    return found.group(1) if found else None


def smoke(client: Client) -> None:
    """Raises ApiError or AssertionError on the first step that fails."""
    user = f"smoke-{uuid.uuid4().hex[:10]}"

    def step(name: str, check: object) -> None:
        print(f"ok   {name}: {check}", flush=True)

    health = client.health()
    step(
        "health",
        f"{health['model']['name']} {health['model']['version']} on {health['engine']}, store {health['store']}",
    )
    features = client.model()["input"]["features"]
    started = time.perf_counter()
    first = client.predict(user, [[0.1] * features] * 3)
    assert first.state == "new" and first.steps == 3, first
    step("predict", f"3 steps for {user}, state new, {(time.perf_counter() - started) * 1000:.0f} ms")
    again = client.predict(user, [[0.1] * features])
    assert again.state == "continued" and again.steps == 4, again
    step("predict", "1 more step, state continued from 3")
    saved = client.state(user)
    assert saved is not None and saved["steps"] == 4, saved
    step("state", f"steps {saved['steps']}, expires {saved['expires_at']}")
    client.delete(user)
    assert client.state(user) is None
    step("delete", "state gone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--region", help="default: the one in the URL")
    parser.add_argument("--auth", choices=["iam", "none"], default="iam")
    args = parser.parse_args()
    region = args.region or region_of(args.url)
    if args.auth == "iam" and region is None:
        sys.exit("smoke failed: no region in the URL; give it: make smoke URL=... REGION=eu-west-1")
    client = Client(args.url, auth=SigV4(region) if args.auth == "iam" and region else None, retries=3)
    try:
        smoke(client)
    except (ApiError, AssertionError) as error:
        sys.exit(f"smoke failed: {error}")
    print("smoke passed")


if __name__ == "__main__":
    main()
