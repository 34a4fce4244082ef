"""The Jupyter kernel named for the lab, and the notebooks' metadata that selects it.

Every notebook names the kernel ``kafka-lab`` (this project's Python environment, with
``lab_env`` importable), so JupyterLab never asks which kernel to use and never picks another
environment's Python. ``python -m lab_env.kernel`` installs it into the environment (``make
setup`` and ``lab jupyter`` do it for you).
"""

from __future__ import annotations

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


if __name__ == "__main__":
    print(f"kernel {KERNEL_NAME!r} installed in {ensure_kernel()}")
