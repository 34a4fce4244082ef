"""Bad-input tests run the CLI against an isolated lab home on free ports, never the shared lab.

The shared lab and its fixtures (``lab``, ``embedded``, ``topic``) live in ``tests/conftest.py``.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from lab_env.api import Lab
from tests.helpers import Namespace, free_ports


@pytest.fixture
def namespace(lab: Lab) -> Namespace:
    """The shared lab with a workshop learner's prefix (``KAFKA_LAB_PREFIX``) unique to this test,
    and the lab's own user: a test that compares the set of its topics before and after sees no
    topic a test beside it makes, so it needs no machine of its own."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return Namespace(Lab(replace(lab.config, prefix=prefix)), {"KAFKA_LAB_PREFIX": prefix})


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
