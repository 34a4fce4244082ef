"""Bad-input tests run the CLI against an isolated lab home on free ports, never the shared lab.

The shared lab and its fixtures (``lab``, ``embedded``, ``topic``) live in ``tests/conftest.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import free_ports


@pytest.fixture
def isolated(tmp_path: Path) -> dict[str, str]:
    """Environment for a second, empty lab home on free ports (the shared cache is reused)."""
    p = free_ports(20)
    return {
        "KAFKA_LAB_HOME": str(tmp_path / "home"),
        "KAFKA_LAB_BROKER_PORTS": ",".join(map(str, p[0:3])),
        "KAFKA_LAB_CONTROLLER_PORTS": ",".join(map(str, p[3:6])),
        "KAFKA_LAB_EXPORTER_PORTS": ",".join(map(str, p[6:9])),
        "KAFKA_LAB_REGISTRY_PORT": str(p[9]),
        "KAFKA_LAB_REGISTRY_MANAGEMENT_PORT": str(p[10]),
        "KAFKA_LAB_PROMETHEUS_PORT": str(p[11]),
        "KAFKA_LAB_JUPYTER_PORT": str(p[12]),
        "KAFKA_LAB_TLS_PORTS": ",".join(map(str, p[13:16])),
        "KAFKA_LAB_SASL_PORTS": ",".join(map(str, p[16:19])),
        "KAFKA_LAB_LAG_EXPORTER_PORT": str(p[19]),
    }
