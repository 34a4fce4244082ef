"""docker-compose.yml read by compose-go, the loader `docker compose` itself is built on.

tests/unit/test_compose.py checks the file against what the lab means; this checks it against
what Compose accepts: the Compose specification's schema and the model's own rules. The loader is
a few lines of Go (tests/compose_loader) over the pinned compose-go module, built here from the Go
module proxy: no Docker engine is needed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tiers import CPU

# Compiling the loader keeps both cores busy for a while (tests/tiers.py).
pytestmark = CPU

ROOT = Path(__file__).resolve().parents[2]
LOADER = ROOT / "tests" / "compose_loader"
COMPOSE_FILE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def loader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go toolchain: compose-go cannot be built to load the compose file")
    binary = tmp_path_factory.mktemp("compose-loader") / "composeloader"
    built = subprocess.run(
        [go, "build", "-buildvcs=false", "-o", str(binary), "."],
        cwd=LOADER,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, f"building the compose loader failed:\n{built.stderr}"
    return binary


def load(loader: Path, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(loader), str(path)], capture_output=True, text=True, timeout=60, cwd=path.parent
    )


def test_compose_accepts_the_committed_file(loader: Path) -> None:
    done = load(loader, COMPOSE_FILE)
    assert done.returncode == 0, f"compose-go refused docker-compose.yml:\n{done.stderr}"
    project = json.loads(done.stdout)
    ours = yaml.safe_load(COMPOSE_FILE.read_text())
    assert set(project["services"]) == set(ours["services"])
    env = project["services"]["kafka-1"]["environment"]
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "INTERNAL"
    assert project["services"]["lab-network"]["network_mode"] == "service:jupyter"


def _variant(tmp_path: Path, change: Any) -> Path:
    doc = yaml.safe_load(COMPOSE_FILE.read_text())
    change(doc)
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "what, change",
    [
        ("a misspelt key", lambda d: d["services"]["kafka-1"].update(healtcheck={})),
        (
            "a dependency on no service",
            lambda d: d["services"]["jupyter"]["depends_on"].update(kafka9={}),
        ),
        (
            "a port that is not a number",
            lambda d: d["services"]["prometheus"]["ports"][0].update(target="x"),
        ),
    ],
)
def test_the_loader_refuses_what_compose_refuses(
    loader: Path, tmp_path: Path, what: str, change: Any
) -> None:
    """The check can fail: each of these is a compose file docker would not start."""
    done = load(loader, _variant(tmp_path, change))
    assert done.returncode != 0, f"compose-go accepted {what}"
