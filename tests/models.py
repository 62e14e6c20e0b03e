"""Keras models the tests serve: the seed model, a stacked chain, and one whose output is only the last step."""

from __future__ import annotations

from carryover.keras_graph import keras
from layers.model.demo import FEATURES, seed_model


def seed() -> keras.Model:
    keras.utils.set_random_seed(1)
    return seed_model(stateful=True)


def stacked() -> keras.Model:
    """GRU -> LSTM -> Dense, stateful, with Dropout, TimeDistributed(Dense) and Activation between."""
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [
            keras.layers.Input(shape=(None, 5), batch_size=1),
            keras.layers.GRU(16, return_sequences=True, stateful=True, name="gru"),
            keras.layers.Dropout(0.3),
            keras.layers.LSTM(12, return_sequences=True, stateful=True, name="lstm"),
            keras.layers.TimeDistributed(keras.layers.Dense(6), name="projection"),
            keras.layers.Activation("tanh", name="score"),
        ],
        name="stacked",
    )


def last_step() -> keras.Model:
    """Stateless SimpleRNN chain whose output is a single row: the prediction after the last timestep."""
    keras.utils.set_random_seed(3)
    inputs = keras.layers.Input(shape=(None, FEATURES), name="events")
    hidden = keras.layers.SimpleRNN(10, return_sequences=True, name="rnn1")(inputs)
    last = keras.layers.SimpleRNN(7, name="rnn2")(hidden)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax", name="class")(last), name="last-step")


BUILDERS = {"seed": seed, "stacked": stacked, "last_step": last_step}
