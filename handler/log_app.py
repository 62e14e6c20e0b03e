"""Lambda entry points of the row log (`carryover.archive`): `archive` on the table's change stream, `compact` on
its daily schedule; configuration happens once, at cold start."""

from carryover.archive.composition import build_archive_handler, build_compact_handler
from carryover.config import Settings

settings = Settings.from_env()
archive = build_archive_handler(settings)
compact = build_compact_handler(settings)
