"""Lambda entry point (`app.lambda_handler`): configuration and model load happen once, at cold start."""

from carryover.composition import build_handler
from carryover.config import Settings

lambda_handler = build_handler(Settings.from_env())
