"""Admin clients that live as long as the operation that needs them.

The lab keeps no client between operations: a librdkafka client that lives through broker
restarts (or `lab down` and `lab up`) keeps a stale view of the cluster ("No leaders found",
UNKNOWN_TOPIC_OR_PART, "waiting for controller") while the cluster is healthy. Every lab
operation makes its client and closes it (``with admin(config) as client:``).

A client's pending futures fail (``_DESTROY``) when the client is garbage-collected, so the
futures of the clients made here keep their client alive until they are done. The last
reference must not be dropped on librdkafka's own thread, which completes the futures: a client
destroyed there aborts the whole process ("rd_kafka_destroy() called from librdkafka owned
thread"; seen here with a future that held its client directly). A done future therefore hands
its client to a Python thread of ours, which drops it.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any

from confluent_kafka.admin import AdminClient as _AdminClient

_released: queue.SimpleQueue[object] = queue.SimpleQueue()
_reaper_lock = threading.Lock()
_reaper: threading.Thread | None = None


def _reap() -> None:
    while True:
        client = _released.get()
        del client  # the last reference, if nothing else holds the client: destroyed here


def _ensure_reaper() -> None:
    """Started from the caller's thread (a forked process starts its own)."""
    global _reaper
    with _reaper_lock:
        if _reaper is None or not _reaper.is_alive():
            _reaper = threading.Thread(target=_reap, name="lab-admin-reaper", daemon=True)
            _reaper.start()


def _hold(client: _AdminClient, future: Future[Any]) -> None:
    _ensure_reaper()
    holder = [client]
    future.add_done_callback(lambda _: _released.put(holder.pop()))


class AdminClient(_AdminClient):
    """confluent-kafka's ``AdminClient``, whose futures keep it alive until they are done."""


def _keeping_alive(name: str) -> Any:
    method = getattr(_AdminClient, name)

    def call(self: AdminClient, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        futures = result.values() if isinstance(result, dict) else [result]
        for future in futures:
            if isinstance(future, Future):
                _hold(self, future)
        return result

    call.__name__ = call.__qualname__ = name
    call.__doc__ = method.__doc__
    return call


# Every request that answers with futures (list_topics and list_groups answer at once).
for _name in (
    "alter_configs",
    "alter_consumer_group_offsets",
    "alter_user_scram_credentials",
    "create_acls",
    "create_partitions",
    "create_topics",
    "delete_acls",
    "delete_consumer_groups",
    "delete_records",
    "delete_topics",
    "describe_acls",
    "describe_cluster",
    "describe_configs",
    "describe_consumer_groups",
    "describe_topics",
    "describe_user_scram_credentials",
    "elect_leaders",
    "incremental_alter_configs",
    "list_consumer_group_offsets",
    "list_consumer_groups",
    "list_offsets",
):
    setattr(AdminClient, _name, _keeping_alive(_name))


def admin(config: dict[str, Any]) -> AdminClient:
    """A new admin client; close it with ``with``, or let its futures keep it alive."""
    return AdminClient(config)
