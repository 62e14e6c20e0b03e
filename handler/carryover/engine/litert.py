"""The production engine: the model's single step as a LiteRT flatbuffer, looped over the timesteps.

The flatbuffer takes (input at one timestep, *states) and returns (*outputs at that timestep, *new states),
in the manifest's order. An interpreter holds its tensors between calls, so each thread gets its own:
requests served in parallel never share buffers.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from carryover.engine import EngineResult
from carryover.manifest import Manifest


def _output_order(name: str) -> int:
    """TensorFlow names a function's outputs Identity, Identity_1, Identity_2, ... in return order."""
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


class LiteRTEngine:
    name = "litert"

    def __init__(self, flatbuffer: bytes, manifest: Manifest) -> None:
        self._flatbuffer = flatbuffer
        self._specs = manifest.outputs
        self._local = threading.local()
        self.run(np.zeros((1, manifest.input.features), np.float32), manifest.zero_state())  # load and warm now

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest) -> LiteRTEngine:
        return cls((bundle / manifest.files["litert"]).read_bytes(), manifest)

    def _interpreter(self) -> tuple[Interpreter, list[int], list[int]]:
        found = getattr(self._local, "interpreter", None)
        if found is None:
            interpreter = Interpreter(model_content=self._flatbuffer, num_threads=1)
            interpreter.allocate_tensors()
            inputs = [d["index"] for d in sorted(interpreter.get_input_details(), key=lambda d: d["index"])]
            outputs = [
                d["index"] for d in sorted(interpreter.get_output_details(), key=lambda d: _output_order(d["name"]))
            ]
            found = self._local.interpreter = (interpreter, inputs, outputs)
        return found

    def run(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
        interpreter, input_ids, output_ids = self._interpreter()
        x_id, state_ids = input_ids[0], input_ids[1:]
        output_count = len(self._specs)
        current = [np.ascontiguousarray(s[np.newaxis], dtype=np.float32) for s in state]
        rows: list[list[np.ndarray]] = [[] for _ in self._specs]
        for t in range(len(inputs)):
            interpreter.set_tensor(x_id, inputs[t : t + 1])
            for tensor_id, value in zip(state_ids, current, strict=True):
                interpreter.set_tensor(tensor_id, value)
            interpreter.invoke()
            results = [interpreter.get_tensor(i) for i in output_ids]
            for collected, value in zip(rows, results[:output_count], strict=True):
                collected.append(value)
            current = results[output_count:]
        outputs = {
            spec.name: np.concatenate(collected) if spec.per_timestep else collected[-1]
            for spec, collected in zip(self._specs, rows, strict=True)
        }
        return EngineResult(outputs=outputs, state=[s[0] for s in current])
