"""Keras models the tests serve: the seed model, chains of every supported kind, window models (several heads,
frames per timestep among them)."""

from __future__ import annotations

import keras
import numpy as np

from carryover.manifest import Mode
from layers.exporter.demo import FEATURES, seed_model


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


def tokens() -> keras.Model:
    """Next-item prediction over a clickstream: ids -> Embedding (0 is padding, masked) -> GRU -> softmax."""
    keras.utils.set_random_seed(4)
    ids = keras.layers.Input(shape=(None,), dtype="int32", name="items")
    embedded = keras.layers.Embedding(50, 8, mask_zero=True, name="embedding")(ids)
    hidden = keras.layers.GRU(12, return_sequences=True, name="gru")(embedded)
    return keras.Model(ids, keras.layers.Dense(5, activation="softmax", name="next_item")(hidden), name="tokens")


def masked() -> keras.Model:
    """Padded rows (all zeros) masked: the LSTM holds its state through them."""
    keras.utils.set_random_seed(5)
    inputs = keras.layers.Input(shape=(None, 4), name="readings")
    hidden = keras.layers.LSTM(10, return_sequences=True, name="lstm")(keras.layers.Masking(0.0, name="mask")(inputs))
    return keras.Model(inputs, keras.layers.Dense(3, name="score")(hidden), name="masked")


def normalized() -> keras.Model:
    """LSTM -> BatchNormalization (inference form, with moving statistics of its own) -> LSTM."""
    keras.utils.set_random_seed(6)
    model = keras.Sequential(
        [
            keras.layers.Input(shape=(None, 5)),
            keras.layers.LSTM(8, return_sequences=True, name="lstm1"),
            keras.layers.BatchNormalization(name="norm"),
            keras.layers.LSTM(6, return_sequences=True, name="lstm2"),
            keras.layers.Dense(2, name="out"),
        ],
        name="normalized",
    )
    rng = np.random.default_rng(6)
    norm = model.get_layer("norm")
    norm.set_weights([rng.uniform(0.5, 2, 8), rng.normal(0, 0.3, 8), rng.normal(0, 0.2, 8), rng.uniform(0.05, 0.5, 8)])
    return model


def conv_window() -> keras.Model:
    """Trained on fixed windows of 12: Conv1D -> MaxPooling1D -> LSTM -> one answer per window."""
    keras.utils.set_random_seed(7)
    inputs = keras.layers.Input(shape=(12, 6), name="window")
    features = keras.layers.Conv1D(8, 3, activation="relu", name="conv")(inputs)
    pooled = keras.layers.MaxPooling1D(2, name="pool")(features)
    hidden = keras.layers.LSTM(10, name="lstm")(pooled)
    return keras.Model(inputs, keras.layers.Dense(1, name="forecast")(hidden), name="conv-window")


def bidirectional() -> keras.Model:
    """Fixed windows of 10 read both ways: Bidirectional(LSTM), a per-timestep output (its last row answers)."""
    keras.utils.set_random_seed(8)
    inputs = keras.layers.Input(shape=(10, 4), name="window")
    both = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True), name="both")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="tag")(both), name="bidirectional")


def classifier() -> keras.Model:
    """A return_sequences=False window classifier on windows of 8."""
    keras.utils.set_random_seed(9)
    inputs = keras.layers.Input(shape=(8, 5), name="window")
    hidden = keras.layers.LSTM(12, name="lstm")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="label")(hidden), name="classifier")


def attention() -> keras.Model:
    """Token ids in windows of 16: Embedding -> self-attention -> pooling -> next-item scores."""
    keras.utils.set_random_seed(11)
    ids = keras.layers.Input(shape=(16,), dtype="int32", name="items")
    embedded = keras.layers.Embedding(40, 8, name="embedding")(ids)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="attention")(embedded, embedded)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(attended)
    return keras.Model(ids, keras.layers.Dense(3, name="next")(pooled), name="attention")


def stateful_batch4() -> keras.Model:
    """A stateful LSTM saved with the batch size it was trained with (4): served one sequence at a time."""
    keras.utils.set_random_seed(10)
    inputs = keras.layers.Input(shape=(None, 3), batch_size=4, name="readings")
    hidden = keras.layers.LSTM(7, return_sequences=True, stateful=True, name="lstm")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden), name="stateful-batch4")


def three_heads() -> keras.Model:
    """A window LSTM with three Dense heads, returned as a dict: a value, class scores and a tag per timestep of
    windows of 10 (the last timestep's answers)."""
    keras.utils.set_random_seed(12)
    inputs = keras.layers.Input(shape=(10, 4), name="window")
    hidden = keras.layers.LSTM(6, return_sequences=True, name="lstm")(inputs)
    heads = {
        "value": keras.layers.Dense(1, name="value")(hidden),
        "kind": keras.layers.Dense(3, activation="softmax", name="kind")(hidden),
        "tag": keras.layers.Dense(2, activation="tanh", name="tag")(hidden),
    }
    return keras.Model(inputs, heads, name="three-heads")


def frames() -> keras.Model:
    """Frames per timestep, (batch, 6, 6, 6, 1): TimeDistributed(Conv2D) -> TimeDistributed(MaxPooling2D) ->
    TimeDistributed(Flatten) -> LSTM on windows of 6 frames."""
    keras.utils.set_random_seed(13)
    inputs = keras.layers.Input(shape=(6, 6, 6, 1), name="frames")
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(3, 3, activation="relu"), name="conv")(inputs)
    x = keras.layers.TimeDistributed(keras.layers.MaxPooling2D(), name="pool")(x)
    x = keras.layers.TimeDistributed(keras.layers.Flatten(), name="flat")(x)
    hidden = keras.layers.LSTM(5, name="lstm")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="activity")(hidden), name="frames")


def pitch_heads() -> keras.Model:
    """A Keras 2.8 music model rebuilt: LSTM(128) on windows of 25 notes of 3 values, three heads (pitch: 128
    logits reaching the hundreds, step, duration). Verified with the tolerance relative to the answer."""
    keras.utils.set_random_seed(14)
    inputs = keras.layers.Input(shape=(25, 3), name="notes")
    hidden = keras.layers.LSTM(128, name="lstm")(inputs)
    heads = {
        "pitch": keras.layers.Dense(128, name="pitch")(hidden),
        "step": keras.layers.Dense(1, name="step")(hidden),
        "duration": keras.layers.Dense(1, name="duration")(hidden),
    }
    model = keras.Model(inputs, heads, name="pitch-heads")
    pitch = model.get_layer("pitch")
    kernel, bias = pitch.get_weights()
    pitch.set_weights([kernel * 200.0, bias * 50.0])  # logits of up to a few hundred
    return model


def big_frames(side: int = 48) -> keras.Model:
    """Frames of side x side x 3 in windows of 20: TimeDistributed(Conv2D) -> TimeDistributed(GlobalAveragePooling2D)
    -> LSTM(8). At 48, a user's state, the last 20 frames, is 552,960 bytes: more than a DynamoDB item holds, kept
    as an object beside it."""
    keras.utils.set_random_seed(15)
    inputs = keras.layers.Input(shape=(20, side, side, 3), name="frames")
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, activation="relu"), name="conv")(inputs)
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D(), name="pool")(x)
    hidden = keras.layers.LSTM(8, name="lstm")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="activity")(hidden), name="big-frames")


BUILDERS = {
    "seed": seed,
    "stacked": stacked,
    "last_step": last_step,
    "tokens": tokens,
    "masked": masked,
    "normalized": normalized,
    "conv_window": conv_window,
    "bidirectional": bidirectional,
    "classifier": classifier,
    "stateful_batch4": stateful_batch4,
    "attention": attention,
    "three_heads": three_heads,
    "three_heads_carried": three_heads,
    "frames": frames,
    "pitch_heads": pitch_heads,
    "big_frames": big_frames,
}
ASKED_MODES: dict[str, Mode] = {"three_heads_carried": "carry"}  # exported in another mode than the model's own
