"""A whole module run against an "external" cluster: lesson 10 executed with papermill while the
lab is addressed only through configuration, as a Strimzi or managed cluster would be.

The lab's own SASL_SSL listener plays the external cluster: ``KAFKA_LAB_BACKEND=external``, the
bootstrap servers in ``KAFKA_LAB_BOOTSTRAP`` and the security settings (SCRAM-SHA-512 over TLS,
the CA) in a Java-style properties file named by ``KAFKA_LAB_CLIENT_PROPERTIES``. Nothing in the
notebook knows; every client it makes comes from ``lab_env``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from lab_env.api import Lab
from lab_env.config import load_config
from tests.notebooks import test_notebooks

pytestmark = pytest.mark.cluster

LESSON = test_notebooks.REPO / "notebooks" / "10-kubernetes-and-beyond.ipynb"


@pytest.fixture
def secured_external_env(lab: Lab, tmp_path: Path) -> dict[str, str]:
    login = lab.admin_sasl_config()
    properties = tmp_path / "client.properties"
    properties.write_text(
        "".join(f"{k}={v}\n" for k, v in login.items() if k != "bootstrap.servers")
    )
    return {
        "KAFKA_LAB_BACKEND": "external",
        "KAFKA_LAB_BOOTSTRAP": login["bootstrap.servers"],
        "KAFKA_LAB_CLIENT_PROPERTIES": str(properties),
        "KAFKA_LAB_REGISTRY_URL": lab.registry_url,
        "KAFKA_LAB_PROMETHEUS_URL": lab.prometheus_url,
    }


def test_configuration_alone_addresses_the_secured_cluster(
    secured_external_env: dict[str, str],
) -> None:
    external = Lab(load_config(secured_external_env))
    assert external.backend.name == "external"
    assert external.client_config()["security.protocol"] == "SASL_SSL"
    assert sorted(b.id for b in external.brokers()) == [1, 2, 3]


def test_lesson_runs_against_an_external_cluster(
    secured_external_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in secured_external_env.items():
        monkeypatch.setenv(key, value)  # the notebook's kernel inherits the environment
    # The executed copy goes to tmp_path, not test-artifacts/ (the suite's own executed copies).
    monkeypatch.setattr(test_notebooks, "ARTIFACTS", tmp_path)
    out = test_notebooks.execute(LESSON)
    executed = nbformat.read(out, as_version=4)
    printed = "".join(
        o.get("text", "")
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )
    assert "backend: external, SASL_SSL" in printed  # the lesson's own clients were external
    assert "the lag drained to 0" in printed
