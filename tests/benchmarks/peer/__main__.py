"""`make bench-peer`: carryover's local API and TorchServe 0.12.0's stateful inference, same model, same run.

    python -m tests.benchmarks.peer BUNDLE_DIR [--venv .venv-peer] [--requests 1000] [--warmup 300]
        [--workdir DIR] [--json FILE] [--quiet-torchserve-logs]

Starts the local API as `make run` does (a process of its own, a free port, its state in a temporary SQLite
file) and TorchServe from the peer venv, checks both against Keras on a chunked sequence, then times, on each
server, alternating request by request: 1-row requests continuing one sequence, then 20 users' sequences continued
round-robin with 1-row and with 10-row requests; prints one line per figure. TorchServe's files and logs go to a
temporary folder, removed after a run that succeeded (or to --workdir, kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from tests.benchmarks.peer.torchserve import (
    CHUNKS,
    LOADS,
    ROOT,
    TOLERANCE,
    Load,
    available,
    check,
    running,
    side_by_side,
    weights_dir,
)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the context managers: TorchServe and the local API are stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-peer", help="the peer venv (default: .venv-peer)")
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per server and load (default 1000)")
    parser.add_argument(
        "--warmup", type=int, default=300, help="untimed requests per server and load first (default 300)"
    )
    parser.add_argument("--workdir", type=Path, help="TorchServe's files and logs (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--quiet-torchserve-logs", action="store_true", help="TorchServe's logging at warn, not its per-request DEBUG"
    )
    args = parser.parse_args()
    problem = available(args.venv)
    if problem:
        sys.exit(problem)
    # as `make run`: the terminal shows no structured logs or metrics; Powertools reads these on import
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    from tests.benchmarks.local_api import local_server

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="carryover-peer-"))
    say = lambda line: print(f"==> {line}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        with local_server(args.bundle) as carryover:
            say(f"carryover local API: up at {carryover}")
            with running(args.venv, args.bundle, workdir, log=say, quiet_logs=args.quiet_torchserve_logs) as url:
                reference = weights_dir(workdir)
                diffs = {"torchserve": check(url, reference, "torchserve")}
                diffs["carryover"] = check(carryover, reference, "carryover")
                loads = {}
                for load in LOADS:
                    say(f"timing {load.describe()}: {args.requests} per server after {args.warmup} warm-ups")
                    loads[load.name] = side_by_side(url, carryover, load, args.requests, args.warmup)
    except BaseException:
        print(f"TorchServe peer: its files and logs are kept in {workdir}", file=sys.stderr)
        raise
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"requests": args.requests, "warmup": args.warmup, "loads": loads, "check_max_abs_diff_vs_keras": diffs}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    _print_checks(diffs)
    for load in LOADS:
        _print_load(load, result["loads"][load.name], args.requests)
    _print_notes(args.quiet_torchserve_logs)


def _print_checks(diffs: dict[str, float]) -> None:
    chunks = ", ".join(map(str, CHUNKS))
    print(
        f"check, TorchServe vs Keras: max abs diff {diffs['torchserve']:.2e} over a {sum(CHUNKS)}-row sequence sent "
        f"in chunks of {chunks} (limit {TOLERANCE:.0e}): the PyTorch twin computes the bundle's model, state carried"
    )
    print(f"check, carryover vs Keras: max abs diff {diffs['carryover']:.2e} on the same chunks")


def _print_load(load: Load, result: dict[str, Any], count: int) -> None:
    """Six lines: p50 and p99 per server, then the two ratios, each starting with the load's label."""
    for name, figures in (("TorchServe 0.12.0", result["torchserve"]), ("carryover local API", result["carryover"])):
        print(
            f"{load.label} {name} p50 {figures['p50_ms']:.1f} ms: the median time, seen by the client over a"
            f" keep-alive HTTP connection, of {load.describe()} ({count} timed)"
        )
        print(
            f"{load.label} {name} p99 {figures['p99_ms']:.1f} ms: 99% of those requests took at most this "
            f"(mean {figures['mean_ms']:.1f} ms, max {figures['max_ms']:.1f} ms, reconnects {figures['reconnects']})"
        )
    print(
        f"{load.label} carryover / TorchServe p50 {result['carryover_over_torchserve_p50']:.2f}x: carryover's median "
        "request takes this many times TorchServe's (below 1: carryover is faster)"
    )
    print(
        f"{load.label} carryover / TorchServe p99 {result['carryover_over_torchserve_p99']:.2f}x: the same at the 99th "
        "percentile"
    )


def _print_notes(quiet: bool) -> None:
    logs = "at warn (--quiet-torchserve-logs)" if quiet else "at its default (DEBUG and an access line per request)"
    print(f"TorchServe's logging was {logs}")
    print(
        "what differs: TorchServe keeps (h, c) in its worker's memory, lost on a restart; carryover commits each "
        "user's state to SQLite before it answers (survives the server being killed)"
    )


if __name__ == "__main__":
    main()
