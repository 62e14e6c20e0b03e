"""Handler instances sharing one process, as the local server runs them: each serves its own request."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from infra.local.server import LocalContext


@dataclass
class PausedContext(LocalContext):
    """A context whose remaining-time read (the route's first step, before it reads the event) waits for `go_on`."""

    reached: threading.Event = field(default_factory=threading.Event)
    go_on: threading.Event = field(default_factory=threading.Event)

    def get_remaining_time_in_millis(self) -> int:
        self.reached.set()
        assert self.go_on.wait(30)
        return super().get_remaining_time_in_millis()


def test_a_request_served_meanwhile_by_another_instance_changes_nothing_of_this_one(make_client):
    """One instance is paused between routing its request and reading it; another serves a request of its own to
    the end. Each applies its own rows to its own user: neither reads the other's event."""
    first, second = make_client(), make_client()
    context = PausedContext(aws_request_id="ann-1")
    event = first.event("POST", "/users/ann/predict", json.dumps({"inputs": [[0.1] * 8]}))
    answers: list[dict[str, object]] = []
    paused = threading.Thread(target=lambda: answers.append(first.handler(event, context)))
    paused.start()
    assert context.reached.wait(30)
    meanwhile = second.predict("bob", [[0.9] * 8, [0.9] * 8])
    context.go_on.set()
    paused.join(30)

    assert meanwhile.status == 200 and meanwhile.body["user_id"] == "bob" and meanwhile.body["steps"] == 2
    (answer,) = answers
    body = json.loads(str(answer["body"]))
    assert answer["statusCode"] == 200 and body["user_id"] == "ann" and body["steps"] == 1
    assert first.state("ann").body["steps"] == 1 and first.state("bob").body["steps"] == 2
