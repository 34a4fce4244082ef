"""Loopback ports that lead to other hosts: the docker backend's JupyterLab container sees the lab
at the addresses a notebook on the host sees.

The brokers advertise their host-facing listeners (TLS, SASL, the plaintext ``EXTERNAL`` one) as
``127.0.0.1:<published port>``, their certificate names 127.0.0.1, and the lab builds exporter,
controller, registry and Prometheus addresses from ``cfg.host`` and the configured ports. Inside a
container, 127.0.0.1 is the container itself; so a sidecar in the JupyterLab container's network
namespace (``lab-network`` in docker-compose.yml) listens on each of those loopback ports and
forwards every connection to the service behind it on the compose network. Nothing in a lesson
needs to know it runs in a container.

    python -m lab_env.forwarding 127.0.0.1:9192=kafka-1:9192 127.0.0.1:7071=kafka-1:7071 ...

Bytes are copied as they are (TLS stays end to end). The plaintext bootstrap of the lessons does
not come through here: the container's ``KAFKA_LAB_BOOTSTRAP`` names the brokers' internal
listener, so throughput measured in a notebook is the cluster's, not this copier's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

CHUNK = 64 * 1024


@dataclass(frozen=True)
class Route:
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int

    def __str__(self) -> str:
        return f"{self.listen_host}:{self.listen_port}={self.target_host}:{self.target_port}"


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    return host, int(port)


def parse(spec: str) -> Route:
    """``listen_host:port=target_host:port``."""
    listen, sep, target = spec.partition("=")
    if not sep:
        raise ValueError(f"{spec!r} is not listen_host:port=target_host:port")
    return Route(*_address(listen), *_address(target))


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # a half-close reaches the other side
    except (ConnectionError, OSError):
        writer.close()


async def _connect(
    route: Route, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            route.target_host, route.target_port
        )
    except OSError as exc:  # the service is down or starting: the client sees a closed socket
        print(f"{route}: {exc}", file=sys.stderr, flush=True)
        writer.close()
        return
    try:
        await asyncio.gather(_copy(reader, upstream_writer), _copy(upstream_reader, writer))
    finally:
        for side in (writer, upstream_writer):
            side.close()
            with contextlib.suppress(ConnectionError, OSError):
                await side.wait_closed()


async def serve(routes: Sequence[Route]) -> list[asyncio.Server]:
    """Start listening on every route; the servers run until closed."""
    servers = []
    for route in routes:

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, route=route) -> None:
            await _connect(route, r, w)

        servers.append(await asyncio.start_server(handle, route.listen_host, route.listen_port))
    return servers


async def _run(routes: Sequence[Route]) -> None:
    servers = await serve(routes)
    print(f"forwarding {len(servers)} ports: " + " ".join(map(str, routes)), flush=True)
    await asyncio.gather(*(server.serve_forever() for server in servers))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab_env.forwarding", description=__doc__)
    parser.add_argument("routes", nargs="+", metavar="LISTEN=TARGET")
    args = parser.parse_args(argv)
    try:
        routes = [parse(spec) for spec in args.routes]
    except ValueError as exc:
        parser.error(str(exc))
    try:
        asyncio.run(_run(routes))
    except OSError as exc:  # a port already taken: say which, do not trace back
        print(f"error: cannot listen: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
