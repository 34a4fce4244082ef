"""pip and conda users must get the same pinned packages.

``pyproject.toml`` is the reference; ``environment.yml`` repeats its main dependencies for
conda/mamba users and the docker backend's JupyterLab image. The test tools (the ``test`` extra)
are pinned in pyproject.toml only: the image needs none of them. Nothing else keeps them in step.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def normalized(specs: list[str], source: str) -> dict[str, str]:
    """{canonical name: canonical requirement}, so spelling (case, ``_`` vs ``-``, extras order,
    spaces) does not count as a difference, but names, extras, pins and markers do."""
    out: dict[str, str] = {}
    for spec in specs:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name not in out, f"{source} lists {name} twice"
        extras = f"[{','.join(sorted(canonicalize_name(e) for e in req.extras))}]"
        marker = f"; {req.marker}" if req.marker else ""
        out[name] = f"{name}{extras if req.extras else ''}{req.specifier}{marker}"
    return out


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pyproject_deps() -> list[str]:
    return pyproject()["project"]["dependencies"]


def extra_test_deps() -> list[str]:
    return pyproject()["project"]["optional-dependencies"]["test"]


def environment_pip_deps() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml should have exactly one `pip:` section"
    return pip_sections[0]


def test_every_dependency_is_pinned() -> None:
    for spec in pyproject_deps() + extra_test_deps():
        specifier = list(Requirement(spec).specifier)
        assert len(specifier) == 1 and specifier[0].operator == "==", f"{spec} is not pinned"


def test_the_test_tools_are_an_extra_of_their_own() -> None:
    extras = pyproject()["project"]["optional-dependencies"]
    assert set(extras) == {"test"}, f"only a `test` extra is expected, found {sorted(extras)}"
    tools = normalized(extra_test_deps(), "the test extra")
    both = sorted(set(tools) & set(normalized(pyproject_deps(), "pyproject.toml")))
    assert not both, f"{both} are in both [project].dependencies and the test extra"
    for tool in ("pytest", "pytest-timeout", "nbval", "playwright", "ruff"):
        assert tool in tools, f"{tool} belongs in the test extra"


def test_environment_yml_mirrors_pyproject() -> None:
    expected = normalized(pyproject_deps(), "pyproject.toml")
    actual = normalized(environment_pip_deps(), "environment.yml")
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = sorted(
        f"{expected[n]} (pyproject) vs {actual[n]} (environment.yml)"
        for n in set(expected) & set(actual)
        if expected[n] != actual[n]
    )
    assert not (missing or extra or differ), (
        "environment.yml's pip list must equal pyproject.toml's [project].dependencies (the "
        f"test extra stays out of it): missing {missing}, extra {extra}, different {differ}"
    )


def test_environment_yml_installs_pip() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(d.split("=")[0] == "pip" for d in conda), "the `pip:` section needs pip itself"


def test_a_kernel_that_charts_does_not_build_rfc3987_parsers() -> None:
    """altair imports jsonschema; jsonschema 4.24 and newer import ``rfc3987_syntax`` for their
    IRI format checker when it is installed, and Jupyter's ``jsonschema[format-nongpl]`` installs
    it. Its import builds some thirty Lark Earley parsers: 3.0 s of every kernel's start here
    (``import altair, pandas; from lab_env import lab``: 5.4 s, 1.6-2.0 s without it). No lesson
    validates an IRI. pyproject.toml pins the jsonschema that does not load it."""
    probe = "import sys, altair; print('rfc3987_syntax' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False", "importing altair loads rfc3987_syntax again"
