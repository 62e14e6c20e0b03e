"""The model bundle's manifest: the one description of a model that the exporter writes and the handler reads.

A bundle is a directory holding `manifest.json` and the files it names. The manifest also fixes the layout
of a user's saved state: every recurrent layer in graph order, each of its state tensors in order, as
little-endian float32.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

MANIFEST_FILE = "manifest.json"
FORMAT: Literal[2] = 2  # 2: LiteRT tensors bound by signature names
STATE_DTYPE = np.dtype("<f4")
NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


class BundleOutdated(ValueError):
    """A bundle written by an exporter of another format."""


InputKind = Literal["features", "tokens", "frames"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Spec):
    """What a timestep is: a row of features, a token id, or a frame (an array of `shape`, sent nested). Engines
    take every timestep as a flat row of `features` values (a frame's in C order)."""

    name: str
    features: int = Field(gt=0)  # 1 for token ids; the product of `shape` for frames
    kind: InputKind = "features"
    vocabulary: int | None = Field(default=None, gt=0)  # token ids are 0 .. vocabulary - 1
    shape: tuple[int, ...] | None = None  # frames: one timestep's shape, e.g. (height, width, channels)


class OutputSpec(_Spec):
    name: str
    units: int = Field(gt=0)
    per_timestep: bool


StateKind = Literal["LSTM", "GRU", "SimpleRNN", "Window"]
Mode = Literal["carry", "window"]
CompanionRole = Literal["next", "previous"]


class StateSpec(_Spec):
    """A recurrent layer's state tensors (carry mode), or the user's last input rows (window mode)."""

    layer: str
    kind: StateKind
    tensors: tuple[str, ...]
    units: int = Field(gt=0)  # values in each tensor
    shape: tuple[int, ...] | None = None  # how they are laid out, when not flat: (rows, features)

    @property
    def shapes(self) -> list[list[int]]:
        return [list(self.shape or (self.units,)) for _ in self.tensors]


class Companion(_Spec):
    """A second model in the bundle, kept beside the one that answers: the version a rollout moves to (next) or
    the one it moves from (previous). Its bundle is the directory `directory`."""

    role: CompanionRole
    directory: str


class Manifest(_Spec):
    format: Literal[2] = FORMAT
    name: str = Field(pattern=NAME_PATTERN)
    version: str
    mode: Mode = "carry"  # carry: recurrent state between requests; window: the model on the last `window` rows
    window: int | None = Field(default=None, gt=0)
    input: InputSpec
    outputs: tuple[OutputSpec, ...]
    states: tuple[StateSpec, ...]
    files: dict[str, str] = Field(description="engine name -> file in the bundle")
    companion: Companion | None = None

    @property
    def state_kind(self) -> str | None:
        """What another version may continue this model's state from: in window mode the state is the user's last
        rows, the same for any model of that window and input; a recurrent state belongs to its version alone."""
        if self.mode != "window":
            return None
        rows = "x".join(str(size) for size in (self.window, *(self.input.shape or (self.input.features,))))
        return f"window:{rows}:{self.input.kind}"

    @cached_property
    def state_shapes(self) -> tuple[int, ...]:
        """Length of every state tensor, in store layout order."""
        return tuple(spec.units for spec in self.states for _ in spec.tensors)

    @cached_property
    def state_bytes(self) -> int:
        return sum(self.state_shapes) * STATE_DTYPE.itemsize

    @cached_property
    def _state_slices(self) -> tuple[slice, ...]:
        ends = np.cumsum(self.state_shapes).tolist()
        return tuple(slice(end - units, end) for units, end in zip(self.state_shapes, ends, strict=True))

    def zero_state(self) -> list[np.ndarray]:
        return [np.zeros(units, dtype=np.float32) for units in self.state_shapes]

    def pack_state(self, tensors: list[np.ndarray]) -> bytes:
        return b"".join(np.asarray(t, dtype=STATE_DTYPE).tobytes() for t in tensors)

    def unpack_state(self, blob: bytes) -> list[np.ndarray] | None:
        """The state tensors in `blob`, or None when it does not fit this model's layout."""
        if len(blob) != self.state_bytes:
            return None
        flat = np.frombuffer(blob, dtype=STATE_DTYPE).astype(np.float32)  # a copy of its own: the parts are views
        return [flat[part] for part in self._state_slices]

    def output_values(self, rows: int) -> int:
        """How many values a response to `rows` timesteps holds."""
        return sum(spec.units * (rows if spec.per_timestep else 1) for spec in self.outputs)

    def pack_outputs(self, outputs: dict[str, np.ndarray]) -> bytes:
        return b"".join(np.asarray(outputs[spec.name], dtype=STATE_DTYPE).tobytes() for spec in self.outputs)

    def unpack_outputs(self, blob: bytes, rows: int) -> dict[str, np.ndarray] | None:
        """The outputs packed by `pack_outputs` for `rows` timesteps, or None when `blob` does not fit."""
        if len(blob) != self.output_values(rows) * STATE_DTYPE.itemsize:
            return None
        flat, found, start = np.frombuffer(blob, dtype=STATE_DTYPE).astype(np.float32), {}, 0
        for spec in self.outputs:
            count = rows if spec.per_timestep else 1
            found[spec.name] = flat[start : start + count * spec.units].reshape(count, spec.units)
            start += count * spec.units
        return found

    def write(self, bundle: Path) -> None:
        (bundle / MANIFEST_FILE).write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, bundle: Path) -> Manifest:
        raw = json.loads((bundle / MANIFEST_FILE).read_text())
        if raw.get("format") != FORMAT:
            raise BundleOutdated(
                f"bundle {bundle} is of format {raw.get('format')}, this release reads format {FORMAT}: "
                "export it again with `make model`"
            )
        return cls.model_validate(raw)
