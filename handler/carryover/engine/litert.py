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

from carryover.engine import EngineResult, slide
from carryover.manifest import Manifest


def _output_order(name: str) -> int:
    """TensorFlow names a function's outputs Identity, Identity_1, Identity_2, ... in return order."""
    match = re.search(r"_(\d+)$", name)
    return int(match.group(1)) if match else 0


def _open(flatbuffer: bytes) -> tuple[Interpreter, list[int], list[int]]:
    """An interpreter with its tensors allocated, its input ids in order and its output ids in return order."""
    interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    inputs = [d["index"] for d in sorted(interpreter.get_input_details(), key=lambda d: d["index"])]
    outputs = [d["index"] for d in sorted(interpreter.get_output_details(), key=lambda d: _output_order(d["name"]))]
    return interpreter, inputs, outputs


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
            found = self._local.interpreter = _open(self._flatbuffer)
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


class LiteRTWindowEngine:
    """Window mode: the whole model as a LiteRT flatbuffer over a batch of windows, (n, window, features); each
    thread's interpreter is resized when a request brings another number of rows."""

    name = "litert"

    def __init__(self, flatbuffer: bytes, manifest: Manifest) -> None:
        self._flatbuffer, self._window = flatbuffer, manifest.window or 0
        self._names = [spec.name for spec in manifest.outputs]
        self._local = threading.local()
        self.run(np.zeros((1, manifest.input.features), np.float32), manifest.zero_state())  # load and warm now

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest) -> LiteRTWindowEngine:
        return cls((bundle / manifest.files["litert"]).read_bytes(), manifest)

    def run(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
        windows, buffer = slide(state[0], inputs, self._window)
        found = getattr(self._local, "interpreter", None)
        if found is None:
            found = self._local.interpreter = _open(self._flatbuffer)
        interpreter, (x_id,), output_ids = found
        if tuple(interpreter.get_input_details()[0]["shape"]) != windows.shape:
            interpreter.resize_tensor_input(x_id, list(windows.shape))
            interpreter.allocate_tensors()
        interpreter.set_tensor(x_id, windows)
        interpreter.invoke()
        outputs = {name: interpreter.get_tensor(i).copy() for name, i in zip(self._names, output_ids, strict=True)}
        return EngineResult(outputs=outputs, state=[buffer])
