"""End-to-end behaviours checked against the original Keras model, for any client (handler or HTTP)."""

from __future__ import annotations

import uuid

import numpy as np

from infra.local.stack import start_stack
from layers.exporter.verify import RELATIVE, TOLERANCE, Difference, difference, random_chunks, sample_sequence
from tests.clients import Client, HttpClient, Reply
from tests.conftest import Served


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


def sequence(served: Served, rng: np.random.Generator, length: int) -> np.ndarray:
    return sample_sequence(served.graph, length, rng)


def as_sent(served: Served, rows: np.ndarray) -> np.ndarray:
    """Engine rows as a request carries them: a frame model's each as a nested array of the frame's shape."""
    shape = served.manifest.input.shape
    return rows if shape is None else rows.reshape(len(rows), *shape)


def expected_chunk(
    served: Served, whole: np.ndarray, full: dict[str, np.ndarray], start: int, end: int
) -> dict[str, np.ndarray]:
    """What Keras gives for timesteps start..end of `whole` when run from a reset state over whole[:end]."""
    expected = {}
    for spec in served.manifest.outputs:
        if spec.per_timestep:
            expected[spec.name] = full[spec.name][start:end]
        else:
            expected[spec.name] = served.graph.reference(served.keras_model, whole[:end])[spec.name]
    return expected


def assert_matches(outputs: dict[str, list[list[float]]], expected: dict[str, np.ndarray]) -> float:
    """Every output within the export's rule (`verify.difference`); the largest absolute difference."""
    assert set(outputs) == set(expected)
    worst = Difference()
    for name, rows in expected.items():
        actual = np.asarray(outputs[name], dtype=np.float64)
        assert actual.shape == rows.shape, (name, actual.shape, rows.shape)
        worst = worst | difference(actual, rows)
    assert worst.passed, f"difference {worst} exceeds {TOLERANCE} + {RELATIVE} x |expected|"
    return worst.absolute


def stream(client: Client, served: Served, user: str, whole: np.ndarray, sizes: list[int], offset: int = 0) -> None:
    """Sends `whole` in chunks for `user`, checking each reply against Keras; steps continue from `offset`."""
    full = served.graph.reference(served.keras_model, whole)
    start = 0
    for size in sizes:
        reply = client.predict(user, as_sent(served, whole[start : start + size]))
        assert reply.status == 200, reply.body
        assert reply.body["steps"] == offset + start + size
        assert reply.body["state"] == ("continued" if offset + start else "new")
        assert_matches(reply.body["outputs"], expected_chunk(served, whole, full, start, start + size))
        start += size


def check_interleaved_streams(client: Client, served: Served, rng: np.random.Generator, users: int = 3) -> None:
    """Several users' sequences sent in chunks of varying size, interleaved, each matching Keras."""
    names = [new_user() for _ in range(users)]
    wholes = {name: sequence(served, rng, int(rng.integers(12, 30))) for name in names}
    fulls = {name: served.graph.reference(served.keras_model, whole) for name, whole in wholes.items()}
    plans = {name: random_chunks(len(whole), rng) for name, whole in wholes.items()}
    sent = dict.fromkeys(names, 0)
    while any(plans.values()):
        for name in names:
            if not plans[name]:
                continue
            size, start = plans[name].pop(0), sent[name]
            reply = client.predict(name, as_sent(served, wholes[name][start : start + size]))
            assert reply.status == 200, reply.body
            assert reply.body["user_id"] == name
            assert reply.body["steps"] == start + size
            assert reply.body["state"] == ("continued" if start else "new")
            assert_matches(
                reply.body["outputs"], expected_chunk(served, wholes[name], fulls[name], start, start + size)
            )
            sent[name] = start + size
    for name in names:
        state = client.state(name)
        assert state.status == 200 and state.body["steps"] == len(wholes[name])


def check_reset_restarts(client: Client, served: Served, rng: np.random.Generator) -> None:
    user = new_user()
    stream(client, served, user, sequence(served, rng, 9), [4, 5])
    fresh = sequence(served, rng, 7)
    full = served.graph.reference(served.keras_model, fresh)
    reply = client.predict(user, fresh[:3], reset=True)
    assert reply.status == 200 and reply.body["state"] == "reset" and reply.body["steps"] == 3
    assert_matches(reply.body["outputs"], expected_chunk(served, fresh, full, 0, 3))
    reply = client.predict(user, fresh[3:], reset=False)
    assert reply.status == 200 and reply.body["state"] == "continued" and reply.body["steps"] == 7
    assert_matches(reply.body["outputs"], expected_chunk(served, fresh, full, 3, 7))


def check_delete_restarts(client: Client, served: Served, rng: np.random.Generator) -> None:
    user = new_user()
    stream(client, served, user, sequence(served, rng, 6), [2, 4])
    assert client.delete(user).status == 204
    missing = client.state(user)
    assert missing.status == 404 and missing.body["error"]["code"] == "not_found"
    stream(client, served, user, sequence(served, rng, 5), [5])
    assert client.delete(user).status == 204
    assert client.delete(user).status == 204  # deleting nothing is fine too


def check_served_over_http(served: Served, engine: str, table: str) -> Reply:
    """Interleaved chunked streams against the local API serving `served` with `engine`, each matching its
    reference; returns what GET /model says of the model."""
    stack = start_stack(served.path, port=0, engine=engine, table=table)
    try:
        client = HttpClient(stack.api.url)
        check_interleaved_streams(client, served, np.random.default_rng(50))
        return client.model()
    finally:
        stack.stop()
