"""Configuration from environment variables, validated once at cold start."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, field_validator

from carryover.manifest import MANIFEST_FILE


class ConfigurationError(RuntimeError):
    pass


class Settings(BaseModel):
    """Each field is read from the environment variable of the same name, upper-cased."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    table_name: str = Field(min_length=3, max_length=255)
    model_bundle: Path = Path("/opt/model")
    engine: Literal["litert", "tensorflow"] | None = None  # None: litert when the bundle has it
    max_timesteps: int = Field(default=1000, ge=1, le=100_000)
    state_ttl_days: int = Field(default=30, ge=1, le=3650)
    conflict_retries: int = Field(default=10, ge=0, le=50)
    state_on_incompatible: Literal["reset", "reject"] = "reset"
    idempotency_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    idempotency_keys: int = Field(default=32, ge=1, le=1000)
    history_rows: int = Field(default=0, ge=0, le=100_000)  # a user's last rows kept, for versions without a state
    item_cache_mb: int = Field(default=64, ge=0, le=8192)  # items kept per instance to write without reading; 0: off
    row_log: bool = True  # each write carries the rows it applied, for the row log (`core/history.py`)
    state_bucket: str | None = None  # where states too large for a DynamoDB item are kept (`store/blobs.py`)
    states_in_objects: Literal["auto", "always"] = "auto"  # auto: only when the item cannot hold them
    s3_endpoint: AnyHttpUrl | None = None  # an S3-compatible endpoint (the tests' moto server)
    log_bucket: str | None = None  # the S3 bucket of the deployed row log (the archiver, compaction, the bootstrap)
    log_prefix: str = "log/"
    row_log_retention_days: int = Field(default=0, ge=0, le=36500)  # rows older than this compacted away; 0: kept
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=10 * 1_048_576)
    auth_mode: Literal["IAM", "JWT", "NONE"] = "IAM"
    tracing: bool = False  # X-Ray through Powertools Tracer; off, the X-Ray SDK is never imported
    failure_queue_url: str | None = None  # the stream function's SQS queue for records it cannot apply
    answers_stream: str | None = None  # the Kinesis stream the stream function publishes answers to (None: none)
    kinesis_endpoint: AnyHttpUrl | None = None  # a Kinesis-compatible endpoint (the local stack's kinesalite)
    dynamodb_endpoint: AnyHttpUrl | None = None
    dynamodb_connect_timeout: float = Field(default=1.0, gt=0, le=10)
    dynamodb_read_timeout: float = Field(default=2.0, gt=0, le=10)
    dynamodb_max_attempts: int = Field(default=3, ge=1, le=10)

    @field_validator("model_bundle")
    @classmethod
    def _bundle_has_manifest(cls, bundle: Path) -> Path:
        if not (bundle / MANIFEST_FILE).is_file():
            raise ValueError(f"{bundle} holds no {MANIFEST_FILE}; build a bundle with `make model`")
        return bundle

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        values = {name: environ[name.upper()] for name in cls.model_fields if environ.get(name.upper())}
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors())
            raise ConfigurationError(f"invalid configuration: {problems}") from None
