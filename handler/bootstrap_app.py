"""Lambda entry point of the bootstrap's worker (`bootstrap_app.lambda_handler`): a batch of row log partitions from
a child of the bootstrap's Distributed Map; configuration and model load happen once, at cold start."""

from carryover.bulk.composition import build_bulk_handler
from carryover.config import Settings

lambda_handler = build_bulk_handler(Settings.from_env())
