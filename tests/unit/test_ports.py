"""Port checks against real sockets this test opens on 127.0.0.1 (port 0: the kernel picks)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from lab_env import ports
from lab_env.errors import LabError

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _listening() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen()
        yield sock


listener = pytest.fixture(_listening, name="listener")
second_listener = pytest.fixture(_listening, name="second_listener")


def port_of(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def test_fresh_port_is_free() -> None:
    assert ports.is_free(HOST, free_port()) is True


def test_listening_port_is_busy(listener: socket.socket) -> None:
    assert ports.is_free(HOST, port_of(listener)) is False


def test_port_is_free_again_after_the_listener_closes(listener: socket.socket) -> None:
    port = port_of(listener)
    listener.close()
    assert ports.is_free(HOST, port) is True


def test_holder_names_this_process(listener: socket.socket) -> None:
    assert ports.holder(port_of(listener)).startswith(f"pid {os.getpid()} (")


def test_holder_of_a_free_port_is_anonymous() -> None:
    assert ports.holder(free_port()) == "another process"


def test_require_free_passes_when_everything_is_free() -> None:
    assert ports.require_free(HOST, {"kafka-1 broker listener": free_port()}) is None


def test_require_free_names_port_component_and_pid(listener: socket.socket) -> None:
    port = port_of(listener)
    with pytest.raises(LabError) as info:
        ports.require_free(HOST, {"kafka-1 broker listener": port, "prometheus": free_port()})
    message = str(info.value)
    assert message.startswith(
        f"The lab cannot start: port {port} (kafka-1 broker listener) is in use by "
        f"pid {os.getpid()} ("
    )
    assert "prometheus" not in message
    assert "KAFKA_LAB_BROKER_PORTS" in message  # says how to move the lab


def test_require_free_names_every_busy_port(
    listener: socket.socket, second_listener: socket.socket
) -> None:
    first, second = port_of(listener), port_of(second_listener)
    with pytest.raises(LabError) as info:
        ports.require_free(HOST, {"schema registry": first, "kafka-3 JMX exporter": second})
    message = str(info.value)
    assert f"port {first} (schema registry) is in use by pid {os.getpid()}" in message
    assert f"port {second} (kafka-3 JMX exporter) is in use by pid {os.getpid()}" in message
    assert message.count("; port ") == 1
