"""The ground truth: a whole sequence through the original Keras model, from a reset state."""

from __future__ import annotations

import numpy as np

from carryover.keras_graph import RecurrentGraph, keras


def reference_outputs(model: keras.Model, graph: RecurrentGraph, sequence: np.ndarray) -> dict[str, np.ndarray]:
    """Prediction outputs of `model` over `sequence` (timesteps, features), as (rows, units) per output."""
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_state()
    results = model(graph.keras_input(sequence[np.newaxis].astype(np.float32)), training=False)
    results = results if isinstance(results, (list, tuple)) else [results]
    rows = {}
    for (spec, _), position in zip(graph.outputs, graph.output_positions, strict=True):
        value = np.asarray(results[position])
        rows[spec.name] = value[0] if spec.per_timestep else value
    return rows
