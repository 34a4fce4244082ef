"""The ``lab`` command loads only what its commands need.

Every ``lab`` command is a new Python process, and the suite and the lessons' fault steps run
dozens of them (``lab kill 2``, ``lab start 2``, ``lab status``). ``nbformat`` validates
notebooks with ``jsonschema``, whose format checkers took 1.7 s to import here: loaded at the
top of the CLI it made ``lab kill 2`` take 5.5 s instead of 1. Only ``lab jupyter`` needs it.
"""

from __future__ import annotations

import subprocess
import sys

NOTEBOOK_MACHINERY = ("nbformat", "jsonschema", "papermill", "nbval")


def test_the_cli_does_not_import_the_notebook_machinery() -> None:
    probe = (
        "import sys, lab_env.cli; "
        f"print(','.join(m for m in {NOTEBOOK_MACHINERY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "", f"`import lab_env.cli` loads {done.stdout.strip()}"
