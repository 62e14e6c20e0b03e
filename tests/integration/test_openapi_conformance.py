"""Someone else's tool: schemathesis runs the local API against its own OpenAPI document (examples, coverage,
fuzzing and stateful runs along the document's links) with every check: no 5xx, every answer as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.stack import start_stack

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.mark.parametrize("model", ["seed", "last_step", "tokens"])
def test_schemathesis_finds_nothing(served, model, tmp_path):
    stack = start_stack(served[model].path, port=0, table=f"conformance-{model}")
    try:
        url = stack.api.url
        result = subprocess.run(
            [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", f"{url}/openapi.json", "--url", url,
             "--checks", "all", "--max-examples", "100", "--seed", "7", "--report", "junit",
             "--report-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        stack.stop()
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    assert "Stateful" in result.stdout and "failed" not in summary.split("Test cases:")[-1], summary
