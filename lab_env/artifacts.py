"""Kafka, its tools, the JMX exporter and the registry, resolved from Maven Central into a cache.

Each *closure* (a set of Maven coordinates and everything they depend on) is resolved by Maven
itself (``--strict-checksums``: a file whose checksum does not match the repository's is refused),
copied into a temporary folder, fingerprinted (SHA-256 of every file into ``manifest.json``) and
only then renamed into place. A rename is atomic, so an interrupted fetch leaves either the old
state or the complete closure, never half of one; leftovers of interrupted fetches are removed by
the next fetch.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab_env import config as C
from lab_env.errors import LabError
from lab_env.filelock import exclusive

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MANIFEST = "manifest.json"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Closure:
    name: str
    coords: tuple[str, ...]  # groupId:artifactId:version[:type[:classifier]]
    transitive: bool = True
    unpack: bool = False  # a tar.gz distribution, unpacked into app/

    @property
    def key(self) -> str:
        digest = hashlib.sha256("\n".join(self.coords).encode()).hexdigest()[:12]
        return f"{self.name}-{digest}"


def _log4j() -> tuple[str, ...]:
    return tuple(
        f"org.apache.logging.log4j:{a}:{C.LOG4J_VERSION}"
        for a in ("log4j-slf4j-impl", "log4j-core", "log4j-api")
    )


CLOSURES: dict[str, Closure] = {
    "broker": Closure(
        "broker", (f"org.apache.kafka:kafka_{C.SCALA_VERSION}:{C.KAFKA_VERSION}", *_log4j())
    ),
    "tools": Closure("tools", (f"org.apache.kafka:kafka-tools:{C.KAFKA_VERSION}", *_log4j())),
    "exporter": Closure(
        "exporter", (f"io.prometheus.jmx:jmx_prometheus_javaagent:{C.JMX_EXPORTER_VERSION}",), False
    ),
    "registry": Closure(
        "registry",
        (f"io.apicurio:apicurio-registry-app:{C.APICURIO_VERSION}:tar.gz:all",),
        False,
        True,
    ),
}


def closure_dir(cfg: C.LabConfig, name: str) -> Path:
    return cfg.cache / "artifacts" / CLOSURES[name].key


# --- the POM Maven resolves ---------------------------------------------------------------------


def _dependency_xml(coord: str) -> str:
    parts = coord.split(":")
    group, artifact, version = parts[:3]
    extra = ""
    if len(parts) > 3:
        extra += f"<type>{parts[3]}</type>"
    if len(parts) > 4:
        extra += f"<classifier>{parts[4]}</classifier>"
    return (
        f"<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version>{extra}</dependency>"
    )


def pom(closure: Closure) -> str:
    deps = "\n    ".join(_dependency_xml(c) for c in closure.coords)
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kafka-lab</groupId><artifactId>{closure.name}</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    {deps}
  </dependencies>
</project>
"""


# --- verification -------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fingerprint(root: Path) -> dict[str, dict[str, object]]:
    return {
        str(p.relative_to(root)): {"sha256": _sha256(p), "size": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def problems(path: Path, deep: bool = False) -> list[str]:
    """What is wrong with a cached closure ([] when sound). ``deep`` re-hashes every file."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return [f"{path} has no {MANIFEST}"]
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        files = None
    if not isinstance(files, dict):
        return [f"{manifest} is unreadable"]
    out = []
    for rel, meta in files.items():
        f = path / rel
        if not f.is_file():
            out.append(f"{rel} is missing")
        elif f.stat().st_size != meta["size"]:
            out.append(f"{rel} has the wrong size")
        elif deep and _sha256(f) != meta["sha256"]:
            out.append(f"{rel} fails its SHA-256 check")
    return out


def is_cached(cfg: C.LabConfig, name: str) -> bool:
    return not problems(closure_dir(cfg, name))


# --- fetching -----------------------------------------------------------------------------------

_DOWNLOADED = re.compile(r"Downloaded from [^:]+: (\S+) \(([^)]*)\)")
_REASONS = (
    "Could not find artifact",
    "Could not transfer artifact",
    "Could not resolve",
    "Failed to read artifact descriptor",
    "offline mode",
    "Checksum validation failed",
)


def _maven(cfg: C.LabConfig) -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LabError(
            "Maven (`mvn`) is needed to fetch Kafka from Maven Central and was not found on PATH. "
            "Install it (Debian/Ubuntu: `sudo apt-get install maven`; macOS: `brew install maven`)."
        )
    return mvn


def die_with_parent() -> None:
    """In a child process (``preexec_fn``): be killed when the parent dies, even by SIGKILL
    (Linux). A Maven child then leaves no orphan writing into a folder the next fetch has
    already swept away."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _run_maven(
    cfg: C.LabConfig, closure: Closure, work: Path, report: Callable[[str], None]
) -> None:
    (work / "pom.xml").write_text(pom(closure))
    argv = [_maven(cfg), "-B", "--strict-checksums", "-f", str(work / "pom.xml")]
    if cfg.maven_repo:
        argv.append(f"-Dmaven.repo.local={cfg.maven_repo}")
    argv += [*cfg.maven_args, f"-DoutputDirectory={work / 'lib'}"]
    if closure.transitive:
        argv += [f"{DEPENDENCY_PLUGIN}:copy-dependencies", "-DincludeScope=runtime"]
    else:  # exactly the named files: a distribution's own POM tree is not ours to resolve
        argv += [f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={','.join(closure.coords)}"]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=work,
        preexec_fn=die_with_parent,
    )
    errors: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            found = _DOWNLOADED.search(line)
            if found:
                report(f"{found.group(1).rsplit('/', 1)[-1]} ({found.group(2).split(' at ')[0]})")
            elif line.startswith("[ERROR]"):
                errors.append(line[7:].strip())
    except BaseException:
        # Interrupted: stop Maven before the caller deletes the folder it writes into.
        proc.kill()
        proc.wait()
        raise
    if proc.wait() != 0:
        reasons = [e for e in errors if any(r in e for r in _REASONS)] or errors
        detail = reasons[0] if reasons else f"Maven exited {proc.returncode}"
        detail = re.sub(r"^Failed to execute goal \S+ \([^)]*\) on project \S+: ", "", detail)
        detail = re.sub(r"\s*-> \[Help \d+\]$", "", detail).rstrip(". ")[:400]
        if "-o" in cfg.maven_args or "--offline" in cfg.maven_args:
            hint = (
                "Maven runs offline (KAFKA_LAB_MAVEN_ARGS) and its repository lacks the artifact."
            )
        else:
            hint = (
                "Check that Maven Central is reachable (a proxy goes in ~/.m2/settings.xml) "
                "and that the pinned version exists."
            )
        raise LabError(
            f"Maven could not fetch the {closure.name} closure ({', '.join(closure.coords)}): "
            f"{detail}. {hint} Nothing was written to {cfg.cache}."
        )


def _unpack(work: Path) -> None:
    archives = list((work / "lib").glob("*.tar.gz"))
    if len(archives) != 1:
        raise LabError(f"expected one distribution archive, Maven produced {len(archives)}")
    with tarfile.open(archives[0]) as tar:
        tar.extractall(work / "app", filter="data")
    archives[0].unlink()


def fetch(cfg: C.LabConfig, name: str, report: Callable[[str], None] = lambda _: None) -> Path:
    """Resolve one closure into the cache (a no-op when it is already there and sound)."""
    closure = CLOSURES[name]
    final = closure_dir(cfg, name)
    root = final.parent
    with exclusive(root / ".lock"):
        for stale in root.glob(".tmp-*"):  # left by an interrupted fetch
            shutil.rmtree(stale, ignore_errors=True)
        if not problems(final):
            return final
        if final.exists():  # damaged: replace it whole
            shutil.rmtree(final)
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{closure.key}-", dir=root))
        try:
            _run_maven(cfg, closure, work, report)
            if closure.unpack:
                _unpack(work)
            (work / "pom.xml").unlink()
            manifest = {"coords": list(closure.coords), "files": _fingerprint(work)}
            (work / MANIFEST).write_text(json.dumps(manifest, indent=1))
            work.rename(final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return final


def classpath(cfg: C.LabConfig, name: str) -> str:
    return str(closure_dir(cfg, name) / "lib" / "*")


def exporter_jar(cfg: C.LabConfig) -> Path:
    return next((closure_dir(cfg, "exporter") / "lib").glob("jmx_prometheus_javaagent-*.jar"))


def registry_jar(cfg: C.LabConfig) -> Path:
    return closure_dir(cfg, "registry") / "app" / "quarkus-run.jar"
