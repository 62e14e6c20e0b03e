"""Exports a bundle's Keras LSTM weights in PyTorch's layout, plus a Keras reference run (project venv).

    python -m tests.benchmarks.peer.export_weights BUNDLE_DIR OUT_DIR

Writes into OUT_DIR, as float32 .npy in PyTorch's layout: lstm_weight_ih (4H, F), lstm_weight_hh (4H, H),
lstm_bias_ih (4H,), lstm_bias_hh (4H,), dense_weight (1, H), dense_bias (1,); and Keras on one sequence from zero
state: ref_x (T, F), ref_y (T, 1), ref_h (H,), ref_c (H,).

Gate order: Keras packs its LSTM kernels as [i, f, c, o] and PyTorch's nn.LSTM as [i, f, g, o], where g is the
cell candidate Keras calls c: the blocks line up one for one and only need a transpose (Keras stores (in, 4H),
PyTorch (4H, in)). Keras has one bias per gate, PyTorch two that are added: the Keras bias goes into bias_ih and
bias_hh is zero. The activations must be tanh and sigmoid (checked), which is what nn.LSTM computes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

from carryover.manifest import Manifest

FEATURES, UNITS = 8, 320  # the demo's shape, which twin.SeedLSTM's defaults are
REFERENCE_STEPS = 37


def export(bundle: Path, out: Path) -> None:
    """Writes the weights and the Keras reference of the bundle's model into `out`."""
    manifest = Manifest.read(bundle)
    if manifest.mode != "carry" or [s.kind for s in manifest.states] != ["LSTM"] or len(manifest.outputs) != 1:
        raise SystemExit(f"{bundle}: the peer serves the demo model only (one LSTM state, one output, carry mode)")
    model = keras.saving.load_model(bundle / manifest.files["tensorflow"], compile=False)
    lstm, dense = model.get_layer(manifest.states[0].layer), model.get_layer(manifest.outputs[0].name)
    config, dense_config = lstm.get_config(), dense.get_config()
    wanted = {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True, "return_sequences": True}
    found = {key: config.get(key) for key in wanted}
    if found != wanted or dense_config.get("activation") != "sigmoid" or dense_config.get("units") != 1:
        raise SystemExit(f"{bundle}: not the demo's layers: LSTM {found}, Dense {dense_config.get('activation')}")
    kernel, recurrent, bias = (np.asarray(w, dtype=np.float32) for w in lstm.get_weights())
    if kernel.shape != (FEATURES, 4 * UNITS) or recurrent.shape != (UNITS, 4 * UNITS):
        raise SystemExit(f"{bundle}: LSTM kernel {kernel.shape}, expected the demo's {(FEATURES, 4 * UNITS)}")
    dense_kernel, dense_bias = (np.asarray(w, dtype=np.float32) for w in dense.get_weights())
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "lstm_weight_ih.npy", np.ascontiguousarray(kernel.T))
    np.save(out / "lstm_weight_hh.npy", np.ascontiguousarray(recurrent.T))
    np.save(out / "lstm_bias_ih.npy", bias)
    np.save(out / "lstm_bias_hh.npy", np.zeros_like(bias))
    np.save(out / "dense_weight.npy", np.ascontiguousarray(dense_kernel.T))
    np.save(out / "dense_bias.npy", dense_bias)

    # The reference: the whole sequence in one call from zero state; the checks send it in chunks.
    x = np.random.default_rng(14).normal(size=(REFERENCE_STEPS, FEATURES)).astype(np.float32)
    for layer in model.layers:
        if getattr(layer, "stateful", False):
            layer.reset_states()
    y, h, c = model.predict(x[np.newaxis], verbose=0)
    for name, value in {"ref_x": x, "ref_y": y[0], "ref_h": h[0], "ref_c": c[0]}.items():
        np.save(out / f"{name}.npy", np.asarray(value, dtype=np.float32))
    print(f"weights of {bundle} and a {REFERENCE_STEPS}-step Keras reference written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    export(args.bundle, args.out)


if __name__ == "__main__":
    main()
