"""Lambda entry point (`app.lambda_handler`): configuration and model load happen once, at cold start; with
SnapStart, the model is run once before the snapshot and the connections made again after a restore."""

from carryover import snapstart
from carryover.composition import build_service
from carryover.config import Settings
from carryover.http.lambda_handler import create_lambda_handler

settings = Settings.from_env()
service = build_service(settings)
snapstart.register(service.warm, service.renew)
lambda_handler = create_lambda_handler(service, settings)
