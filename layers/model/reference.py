"""The ground truth: the original Keras model on the whole sequence (carry mode), or on each timestep's window
as `keras.utils.pad_sequences` pads it (window mode)."""

from __future__ import annotations

import numpy as np

from carryover.keras_graph import RecurrentGraph, WindowGraph, keras


def reference_outputs(
    model: keras.Model, graph: RecurrentGraph | WindowGraph, sequence: np.ndarray
) -> dict[str, np.ndarray]:
    """Prediction outputs over `sequence` (timesteps, features), as (rows, units) per output."""
    if isinstance(graph, WindowGraph):
        windows = keras.utils.pad_sequences(
            [sequence[: t + 1] for t in range(len(sequence))], maxlen=graph.window, dtype="float32"
        )
        return {
            spec.name: np.asarray(value) for (spec, _), value in zip(graph.outputs, graph.call(windows), strict=True)
        }
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
