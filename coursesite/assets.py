"""Mermaid for the site's diagrams, served by the site itself.

JupyterLab 4 draws Mermaid blocks in Markdown cells with the copy it bundles; a static page needs
its own. nbconvert's template imports ``mermaid.esm.min.mjs`` (and its chunks) from a CDN by
default; the site copies them from the npm package instead, fetched once from the npm registry,
checked against the registry's published SHA-512, unpacked atomically into the lab's cache.
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import tarfile
import tempfile
from pathlib import Path

import requests

from lab_env.config import LabConfig
from lab_env.errors import LabError

# The version nbconvert's lab template is written for (its default mermaid_js_url).
MERMAID_VERSION = "11.10.0"
MERMAID_URL = f"https://registry.npmjs.org/mermaid/-/mermaid-{MERMAID_VERSION}.tgz"
MERMAID_INTEGRITY = (  # the registry's dist.integrity for that version
    "sha512-oQsFzPBy9xlpnGxUqLbVY8pvknLlsNIJ0NWwi8SUJjhbP1IT0E0o1lfhU4iYV3ubpy+xkzkaOyDUQMn06vQElQ=="
)
ENTRY = "mermaid.esm.min.mjs"
CHUNKS = "chunks/mermaid.esm.min"  # what the entry module imports, relative to it


def mermaid_dir(cfg: LabConfig) -> Path:
    return cfg.cache / "site" / f"mermaid-{MERMAID_VERSION}"


def integrity(data: bytes) -> str:
    """npm's ``dist.integrity`` of a tarball: ``sha512-`` and the base64 digest."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch_mermaid(cfg: LabConfig, timeout: float = 120.0) -> Path:
    """The folder holding Mermaid's ES module and its chunks (fetched on first use)."""
    target = mermaid_dir(cfg)
    if (target / ENTRY).is_file():
        return target
    try:
        response = requests.get(MERMAID_URL, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise LabError(
            f"Could not download Mermaid {MERMAID_VERSION} from the npm registry ({exc}); the "
            "site's diagrams need it once, then it is cached. Check the network and run again."
        ) from None
    if integrity(response.content) != MERMAID_INTEGRITY:
        raise LabError(
            f"The Mermaid {MERMAID_VERSION} package from {MERMAID_URL} does not match its "
            "published checksum; nothing was kept. Run again, or check for a proxy altering it."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        work = Path(tmp) / "mermaid"
        with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
            for member in archive.getmembers():
                name = member.name.removeprefix("package/dist/")
                if member.isfile() and (name == ENTRY or name.startswith(CHUNKS + "/")):
                    member.name = name
                    archive.extract(member, work, filter="data")
        if not (work / ENTRY).is_file():
            raise LabError(f"{MERMAID_URL} holds no dist/{ENTRY}; is the version right?")
        shutil.rmtree(target, ignore_errors=True)
        work.rename(target)  # atomic: a half-unpacked copy is never seen as the cache
    return target
