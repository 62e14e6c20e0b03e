"""Lambda entry point (`app.lambda_handler`): configuration and model load happen once, at cold start."""

from carryover.config import Settings
from carryover.routes import create_lambda_handler
from carryover.service import create_service

settings = Settings.from_env()
lambda_handler = create_lambda_handler(create_service(settings), settings)
