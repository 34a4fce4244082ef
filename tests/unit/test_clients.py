"""lab_env.clients: an admin client kept alive by its futures, and never destroyed on librdkafka's
own thread. Nothing listens on the port used: each request ends with librdkafka's own timeout.

The fire-and-forget case runs in a child process: done wrong, librdkafka aborts the whole
process ("rd_kafka_destroy() called from librdkafka owned thread"), which would take the test
session with it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from confluent_kafka import KafkaException

from lab_env import clients
from tests.helpers import free_ports

FIRE_AND_FORGET = """
import time
from lab_env import clients
conf = {"bootstrap.servers": "127.0.0.1:PORT", "log_level": 0}
for _ in range(5):
    clients.admin(conf).describe_cluster(request_timeout=1)  # nothing keeps client or future
time.sleep(3)  # every request times out meanwhile, on librdkafka's background thread
print("alive")
"""


def closed_port() -> str:
    return f"127.0.0.1:{free_ports(1)[0]}"


def test_an_unreferenced_client_keeps_its_future_valid() -> None:
    """The future fails with the request's own timeout, not _DESTROY: the client outlived the
    expression that made it."""
    future = clients.admin({"bootstrap.servers": closed_port(), "log_level": 0}).describe_cluster(
        request_timeout=1
    )
    with pytest.raises(KafkaException) as raised:
        future.result(timeout=10)
    assert raised.value.args[0].name() != "_DESTROY", raised.value


def test_futures_of_a_dict_keep_the_client_alive() -> None:
    futures = clients.admin({"bootstrap.servers": closed_port(), "log_level": 0}).delete_topics(
        ["a", "b"], request_timeout=1
    )
    for future in futures.values():
        with pytest.raises(KafkaException) as raised:
            future.result(timeout=10)
        assert raised.value.args[0].name() != "_DESTROY"


def test_fire_and_forget_does_not_abort_the_process() -> None:
    port = closed_port().rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-c", FIRE_AND_FORGET.replace("PORT", port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "alive" in done.stdout, done.stderr[-2000:]


def test_a_with_block_closes_the_client() -> None:
    with clients.admin({"bootstrap.servers": closed_port(), "log_level": 0}) as admin:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        admin.list_topics(timeout=0.1)
