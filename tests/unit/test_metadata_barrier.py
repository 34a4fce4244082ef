"""The metadata barrier's rule, against exporters served on 127.0.0.1 whose offsets the test moves:
it waits until every live node has applied the offset committed when it was called, names the
nodes behind when time runs out, and waits for a node whose exporter does not answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lab_env import metadata_barrier
from lab_env.config import LabConfig, load_config
from lab_env.errors import LabError
from lab_env.metadata_barrier import NodeOffsets, committed_offset
from lab_env.waiting import wait_for
from tests.helpers import free_ports


class Exporter:
    """One node's exporter: serves the two samples the barrier reads."""

    def __init__(self, high_watermark: int, applied: int) -> None:
        self.high_watermark, self.applied = high_watermark, applied
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                exporter.scrapes += 1
                body = (
                    f"{metadata_barrier.HIGH_WATERMARK} {exporter.high_watermark}.0\n"
                    f"{metadata_barrier.APPLIED} {exporter.applied}.0\n"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LabConfig, list]]:
    monkeypatch.setenv("KAFKA_LAB_HOME", str(tmp_path / "home"))
    exporters = [Exporter(101, 100), Exporter(101, 100), Exporter(99, 98)]
    cfg = load_config()
    cfg = replace(cfg, ports=replace(cfg.ports, exporters=tuple(e.port for e in exporters)))
    yield cfg, exporters
    for e in exporters:
        e.close()


def test_the_committed_offset_is_the_highest_high_watermark_less_one() -> None:
    views = {1: NodeOffsets(101, 100), 2: NodeOffsets(99, 98), 3: None}
    assert committed_offset(views) == 100
    assert committed_offset({1: None, 2: NodeOffsets(-1, 5)}) is None


def test_it_returns_once_every_live_node_has_applied_the_committed_offset(nodes) -> None:
    cfg, exporters = nodes
    timer = threading.Timer(0.3, lambda: setattr(exporters[2], "applied", 100))
    timer.start()
    try:
        applied = metadata_barrier.wait_applied(cfg, (1, 2, 3), timeout=10)
    finally:
        timer.cancel()
    assert applied.committed == 100
    assert applied.applied == {1: 100, 2: 100, 3: 100}
    assert applied.seconds >= 0.3


def test_the_target_is_fixed_when_it_is_called(nodes) -> None:
    """Records committed later (the quorum writes one every 500 ms) are not waited for."""
    cfg, exporters = nodes
    result: list[metadata_barrier.Applied] = []
    waiter = threading.Thread(
        target=lambda: result.append(metadata_barrier.wait_applied(cfg, (1, 2, 3), timeout=10))
    )
    waiter.start()
    wait_for("the barrier's first scrape", lambda: exporters[2].scrapes > 0, timeout=5)
    for e in exporters:
        e.high_watermark = 300  # committed after the barrier was called
    exporters[2].applied = 100
    waiter.join(10)
    assert result and result[0].committed == 100


def test_a_timeout_names_the_nodes_behind(nodes) -> None:
    cfg, exporters = nodes
    exporters[1].applied = 99
    with pytest.raises(LabError, match=r"committed offset 100; kafka-2 at 99, kafka-3 at 98\)"):
        metadata_barrier.wait_applied(cfg, (1, 2, 3), timeout=0.3)


def test_only_live_nodes_are_waited_for(nodes) -> None:
    cfg, exporters = nodes  # node 3 is behind, but not live (killed or paused)
    assert metadata_barrier.wait_applied(cfg, (1, 2), timeout=5).applied == {1: 100, 2: 100}
    assert exporters[2].scrapes == 0


def test_a_live_node_that_does_not_answer_is_named(nodes) -> None:
    cfg, _ = nodes
    silent = replace(
        cfg, ports=replace(cfg.ports, exporters=(*cfg.ports.exporters[:2], free_ports(1)[0]))
    )
    with pytest.raises(LabError, match="kafka-3 does not answer"):
        metadata_barrier.wait_applied(silent, (1, 2, 3), timeout=0.5)


def test_no_live_node_means_nothing_to_wait_for(nodes) -> None:
    cfg, exporters = nodes
    assert metadata_barrier.wait_applied(cfg, (), timeout=1).committed == -1
    assert sum(e.scrapes for e in exporters) == 0
