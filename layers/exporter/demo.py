"""Builds the demo model: the stateful LSTM of the question that started the project, briefly trained.

    python -m layers.exporter.demo OUT.keras

The task needs memory older than any one request: the target at step t is whether the running sum of
feature 0 over every step so far is positive. Training runs on a stateless twin (any batch size), whose
weights then go into the exact seed architecture (stateful, batch size 1). Seeds are fixed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from carryover.native import notices_dropped

with notices_dropped():  # TensorFlow's start-up notices kept off the terminal
    import keras

FEATURES = 8
UNITS = 320
NAME = "seed_lstm"


def seed_model(stateful: bool = True) -> keras.Model:
    """The question's model in Keras 3 syntax; with stateful=False, its trainable twin."""
    inputs = keras.layers.Input(shape=(None, FEATURES), batch_size=1 if stateful else None, name="num_input")
    lstm, state_h, state_c = keras.layers.LSTM(
        UNITS, return_sequences=True, return_state=True, stateful=stateful, name="lstm"
    )(inputs)
    dense = keras.layers.Dense(1, activation="sigmoid", name="main_output")(lstm)
    return keras.Model(inputs, [dense, state_h, state_c], name=NAME)


def task(sequences: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.uniform(-1, 1, size=(sequences, length, FEATURES)).astype(np.float32)
    y = (np.cumsum(x[:, :, 0], axis=1) > 0).astype(np.float32)[..., np.newaxis]
    return x, y


EPOCHS = 4


def train(epochs: int = EPOCHS, seed: int = 7, verbose: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    twin = seed_model(stateful=False)
    trainable = keras.Model(twin.inputs, twin.outputs[0])
    trainable.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy", metrics=["accuracy"])
    x, y = task(768, 40, np.random.default_rng(seed))
    trainable.fit(x, y, batch_size=64, epochs=epochs, verbose=verbose, shuffle=False)
    model = seed_model(stateful=True)
    model.set_weights(twin.get_weights())
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"training the demo model (LSTM {UNITS}, {EPOCHS} epochs of 768 sequences; one line an epoch)", flush=True)
    train(verbose=2).save(args.out)
    print(f"demo model written to {args.out} in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
