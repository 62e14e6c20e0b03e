"""SnapStart (the template's `SnapStart` parameter): what a snapshot holds and what a restore renews, through
the hooks of Lambda's Python runtime (`snapshot_restore_py`, which the runtime provides; absent elsewhere, where
nothing is registered).

Before the snapshot: the model, loaded at init, is run once (its first run allocates and plans what every later
run reuses). After a restore: every AWS client is made again (a socket opened before the snapshot is dead by
now, and the first call on it would pay a failed send before a new handshake; the credentials are the restored
environment's), and the item cache is emptied (other instances have written since the snapshot). Write ids come
from `os.urandom` at each write, so no two restored copies of one snapshot ever share one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from carryover.observability import logger

Client = TypeVar("Client")


@functools.cache
def _loader() -> Any:
    """The service models renewed clients are made from: loaded once (before the snapshot, a restore makes its
    clients without reading them again)."""
    from botocore.session import Session

    return Session().get_component("data_loader")


def renewed(client: Client) -> Client:
    """A new client like `client` (its service, region, endpoint and configuration), with no connection yet, on
    the credentials the environment gives now (a restored one's, not the snapshot's)."""
    from botocore.session import Session

    session = Session()
    session.register_component("data_loader", _loader())
    meta: Any = getattr(client, "meta")  # noqa: B009 (any botocore client)
    made = session.create_client(
        meta.service_model.service_name,
        region_name=meta.region_name,
        endpoint_url=meta.endpoint_url,
        config=meta.config,
    )
    return cast("Client", made)


def register(warm: Callable[[], None], renew: Callable[[], None]) -> bool:
    """Registers `warm` before a snapshot and `renew` after a restore, where the runtime has the hooks."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot  # type: ignore[import-untyped]
    except ImportError:
        return False

    def before_snapshot() -> None:
        warm()
        renew()  # once before too: the clients' service models loaded into the snapshot, not after each restore

    register_before_snapshot(_logged("before snapshot", before_snapshot))
    register_after_restore(_logged("after restore", renew))
    return True


def _logged(name: str, hook: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        hook()
        logger.info("snapstart hook ran", extra={"hook": name})

    return run
