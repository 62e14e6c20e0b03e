"""The production engine: the bundle's LiteRT flatbuffer, its tensors bound once by their signature names.

Carry mode: the model's single step, (x, state_0, ...) -> (output_0, ..., state_0, ...), looped over the
timesteps. Window mode: the whole model over a batch of windows, (x) -> (output_0, ...). An interpreter holds
its tensors between calls, so each thread gets its own: requests served in parallel never share buffers.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from carryover.engine import EngineResult, slide
from carryover.manifest import Manifest


@dataclass(frozen=True)
class _Bound:
    interpreter: Interpreter
    inputs: dict[str, int]  # signature name -> tensor index
    outputs: dict[str, int]


def _bind(flatbuffer: bytes) -> _Bound:
    interpreter = Interpreter(model_content=flatbuffer, num_threads=1)
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()  # the bundle's one signature; only its names are kept
    inputs = {name: detail["index"] for name, detail in runner.get_input_details().items()}
    outputs = {name: detail["index"] for name, detail in runner.get_output_details().items()}
    return _Bound(interpreter, inputs, outputs)  # the runner goes: it would pin the interpreter's buffers


class _PerThread:
    """The flatbuffer's interpreter of the calling thread, bound on first use."""

    def __init__(self, flatbuffer: bytes) -> None:
        self._flatbuffer = flatbuffer
        self._local = threading.local()

    def get(self) -> _Bound:
        bound: _Bound | None = getattr(self._local, "bound", None)
        if bound is None:
            bound = self._local.bound = _bind(self._flatbuffer)
        return bound


class LiteRTEngine:
    name = "litert"

    def __init__(self, flatbuffer: bytes, manifest: Manifest) -> None:
        self._interpreters = _PerThread(flatbuffer)
        self._specs = manifest.outputs
        self._states = [f"state_{i}" for i in range(len(manifest.state_shapes))]
        self.run(np.zeros((1, manifest.input.features), np.float32), manifest.zero_state())  # load and warm now

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest) -> LiteRTEngine:
        return cls((bundle / manifest.files["litert"]).read_bytes(), manifest)

    def run(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
        bound = self._interpreters.get()
        interpreter, x_id = bound.interpreter, bound.inputs["x"]
        state_in = [bound.inputs[name] for name in self._states]
        state_out = [bound.outputs[name] for name in self._states]
        output_ids = [bound.outputs[f"output_{i}"] for i in range(len(self._specs))]
        current = [np.ascontiguousarray(s[np.newaxis], dtype=np.float32) for s in state]
        rows: list[list[np.ndarray]] = [[] for _ in self._specs]
        for t in range(len(inputs)):
            interpreter.set_tensor(x_id, inputs[t : t + 1])
            for tensor_id, value in zip(state_in, current, strict=True):
                interpreter.set_tensor(tensor_id, value)
            interpreter.invoke()
            for collected, tensor_id in zip(rows, output_ids, strict=True):
                collected.append(interpreter.get_tensor(tensor_id))
            current = [interpreter.get_tensor(tensor_id) for tensor_id in state_out]
        outputs = {
            spec.name: np.concatenate(collected) if spec.per_timestep else collected[-1]
            for spec, collected in zip(self._specs, rows, strict=True)
        }
        return EngineResult(outputs=outputs, state=[s[0] for s in current])


class LiteRTWindowEngine:
    """Window mode: each thread's interpreter is resized when a request brings another number of rows."""

    name = "litert"

    def __init__(self, flatbuffer: bytes, manifest: Manifest) -> None:
        self._interpreters = _PerThread(flatbuffer)
        self._window = manifest.window or 0
        self._names = [spec.name for spec in manifest.outputs]
        self.run(np.zeros((1, manifest.input.features), np.float32), manifest.zero_state())  # load and warm now

    @classmethod
    def load(cls, bundle: Path, manifest: Manifest) -> LiteRTWindowEngine:
        return cls((bundle / manifest.files["litert"]).read_bytes(), manifest)

    def run(self, inputs: np.ndarray, state: list[np.ndarray]) -> EngineResult:
        windows, buffer = slide(state[0], inputs, self._window)
        bound = self._interpreters.get()
        interpreter, x_id = bound.interpreter, bound.inputs["x"]
        if tuple(interpreter.get_tensor(x_id).shape) != windows.shape:
            interpreter.resize_tensor_input(x_id, list(windows.shape))
            interpreter.allocate_tensors()
        interpreter.set_tensor(x_id, windows)
        interpreter.invoke()
        outputs = {
            name: interpreter.get_tensor(bound.outputs[f"output_{i}"]).copy() for i, name in enumerate(self._names)
        }
        return EngineResult(outputs=outputs, state=[buffer])
