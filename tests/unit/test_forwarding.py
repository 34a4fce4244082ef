"""The JupyterLab container's loopback forwarder, on this machine's loopback addresses."""

from __future__ import annotations

import asyncio
import socket

import pytest

from lab_env import compose, forwarding
from lab_env.config import LabConfig, Ports
from lab_env.forwarding import Route
from tests.helpers import free_ports


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


def test_bytes_go_both_ways_and_a_half_close_reaches_the_target() -> None:
    async def scenario() -> tuple[bytes, bytes]:
        target_port, listen_port = free_ports(2)
        target = await asyncio.start_server(_echo, "127.0.0.1", target_port)
        (server,) = await forwarding.serve(
            [Route("127.0.0.1", listen_port, "127.0.0.1", target_port)]
        )
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listen_port)
            writer.write(b"kafka " * 20_000)  # more than one read's worth
            writer.write_eof()  # the echo server ends when it sees the end
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return answer, b"KAFKA " * 20_000
        finally:
            server.close()
            target.close()

    answer, expected = asyncio.run(scenario())
    assert answer == expected


def test_a_target_that_is_down_closes_the_client_connection() -> None:
    async def scenario() -> bytes:
        dead, listen_port = free_ports(2)
        (server,) = await forwarding.serve([Route("127.0.0.1", listen_port, "127.0.0.1", dead)])
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", listen_port)
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            return answer
        finally:
            server.close()

    assert asyncio.run(scenario()) == b""


@pytest.mark.parametrize(
    "spec", ["127.0.0.1:9192", "127.0.0.1:x=kafka-1:9192", ":1=a:2", "a:1=b:70000"]
)
def test_malformed_routes_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        forwarding.parse(spec)


def test_a_taken_port_is_a_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert forwarding.main([f"127.0.0.1:{port}=127.0.0.1:1"]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_every_address_a_notebook_uses_is_forwarded_to_its_service() -> None:
    routes = {str(r) for r in map(forwarding.parse, compose.forwarding_routes(LabConfig()))}
    ports = Ports()
    for i, node in enumerate((1, 2, 3)):
        assert f"127.0.0.1:{ports.tls[i]}=kafka-{node}:{compose.TLS_PORT}" in routes
        assert f"127.0.0.1:{ports.sasl[i]}=kafka-{node}:{compose.SASL_PORT}" in routes
        assert f"127.0.0.1:{ports.brokers[i]}=kafka-{node}:{compose.EXTERNAL_PORT}" in routes
        assert f"127.0.0.1:{ports.exporters[i]}=kafka-{node}:{compose.EXPORTER_PORT}" in routes
        assert f"127.0.0.1:{ports.controllers[i]}=kafka-{node}:{compose.CONTROLLER_PORT}" in routes
    assert f"127.0.0.1:{ports.registry}=schema-registry:{compose.REGISTRY_PORT}" in routes
    assert f"127.0.0.1:{ports.prometheus}=prometheus:{compose.PROMETHEUS_PORT}" in routes
    assert compose.forwarding_routes(LabConfig(host="lab.example")) == []
