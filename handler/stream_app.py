"""Lambda entry point of the stream function (`stream_app.lambda_handler`): Kinesis batches from its event
source mapping; configuration and model load happen once, at cold start."""

from carryover.config import Settings
from carryover.stream.composition import build_stream_handler

lambda_handler = build_stream_handler(Settings.from_env())
