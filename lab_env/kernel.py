"""The Jupyter kernel named for the lab, the notebooks' metadata that selects it, and
JupyterLab's settings for this environment.

Every notebook names the kernel ``kafka-lab`` (this project's Python environment, with
``lab_env`` importable), so JupyterLab never asks which kernel to use and never picks another
environment's Python. ``python -m lab_env.kernel`` installs it into the environment (``make
setup`` and ``lab jupyter`` do it for you).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KERNEL_NAME = "kafka-lab"
# No version in the name: notebooks' metadata must not change with the Python that saved them.
DISPLAY_NAME = "Python 3 (Kafka lab)"


def kernelspec() -> dict[str, Any]:
    """A notebook's ``metadata.kernelspec``."""
    return {"name": KERNEL_NAME, "display_name": DISPLAY_NAME, "language": "python"}


def ensure_kernel() -> Path:
    """Install (or refresh) the kernel in this environment; returns its directory."""
    from ipykernel.kernelspec import install

    return Path(install(kernel_name=KERNEL_NAME, display_name=DISPLAY_NAME, prefix=sys.prefix))


# JupyterLab asks on first start whether to fetch news; the lab may be offline and a learner's
# first view should be the start page, so the answer is given here: no news, no update checks.
# Notebooks render every cell (no windowing): the lessons are a few dozen cells, and windowed
# rendering could leave a scrolled-to output blank for a moment.
SETTINGS = {
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
}


def ensure_settings() -> Path:
    """Merge the lab's JupyterLab settings into this environment's ``overrides.json``."""
    path = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    current: dict[str, Any] = {}
    if path.is_file():
        try:
            current = json.loads(path.read_text())
        except json.JSONDecodeError:
            current = {}
    for plugin, values in SETTINGS.items():
        current[plugin] = {**current.get(plugin, {}), **values}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=2) + "\n")
    return path


if __name__ == "__main__":
    print(f"kernel {KERNEL_NAME!r} installed in {ensure_kernel()}")
    print(f"JupyterLab settings in {ensure_settings()}")
