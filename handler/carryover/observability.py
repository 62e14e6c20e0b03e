"""Powertools Logger, Tracer and Metrics, created once and shared by every module."""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="carryover")
tracer = Tracer(service="carryover")
metrics = Metrics(namespace="carryover", service="carryover")
