"""`make deploy`'s first step: AWS credentials and a region, checked before anything slow or interactive, each
missing one said in one line with what to set.

    python -m infra.aws_check
"""

from __future__ import annotations

import re
import sys
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
    if not saved and not session.get_config_variable("region"):
        found.append("no AWS region: set AWS_REGION (or a region in your AWS profile); make deploy saves it after")
    return found


def main() -> None:
    found = problems(Session())
    for problem in found:
        print(f"cannot deploy: {problem}", file=sys.stderr)
    if found:
        sys.exit(1)


if __name__ == "__main__":
    main()
