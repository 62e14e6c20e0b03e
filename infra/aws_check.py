"""`make deploy`'s first step: AWS credentials and a region (AWS_REGION, AWS_DEFAULT_REGION, the profile's or
samconfig.toml's), checked before anything slow or interactive, each missing one said in one line with what to
set; then the region found, which `make deploy` gives `sam deploy`.

    python -m infra.aws_check
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from botocore.exceptions import BotoCoreError
from botocore.session import Session

SAMCONFIG = Path(__file__).resolve().parent.parent / "samconfig.toml"


def problems(session: Session, samconfig: Path = SAMCONFIG) -> list[str]:
    found = []
    try:
        credentials = session.get_credentials()
    except BotoCoreError as error:  # a profile that does not exist, a broken config file, ...
        found.append(f"AWS credentials cannot be read ({error}): check AWS_PROFILE and ~/.aws/config")
        credentials = None
    else:
        if credentials is None:
            found.append(
                "no AWS credentials: set AWS_PROFILE (after `aws configure` or `aws sso login`), or "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
    saved = samconfig.is_file() and re.search(r"^region\s*=", samconfig.read_text(), re.MULTILINE)
    if not saved and not region(session):
        found.append("no AWS region: set AWS_REGION (or a region in your AWS profile); make deploy saves it after")
    return found


def region(session: Session, environ: Mapping[str, str] = os.environ) -> str | None:
    """The region the SDKs would use: AWS_REGION first (which botocore's own lookup skips), then AWS_DEFAULT_REGION
    and the profile's."""
    found: str | None = environ.get("AWS_REGION") or session.get_config_variable("region")
    return found


def main() -> None:
    """The problems, one line each (exit 1); else, on stdout, the region to deploy to (empty: samconfig.toml's)."""
    session = Session()
    found = problems(session)
    for problem in found:
        print(f"cannot deploy: {problem}", file=sys.stderr)
    if found:
        sys.exit(1)
    print(region(session) or "")


if __name__ == "__main__":
    main()
