"""What a benchmark ran on, printed beside its figures so they can be compared honestly."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import psutil

from lab_env.config import APICURIO_VERSION, KAFKA_VERSION, REGISTRY_JAVA_MIN_MAJOR, LabConfig
from lab_env.errors import LabError
from lab_env.java import find_java


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(cfg: LabConfig) -> list[str]:
    try:
        java = find_java(cfg).version
        registry_java = find_java(cfg, REGISTRY_JAVA_MIN_MAJOR, "the registry").version
    except LabError:
        java = registry_java = "not found"
    ram = psutil.virtual_memory().total / 2**30
    return [
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {ram:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"software: Kafka {KAFKA_VERSION} on Java {java}, Apicurio Registry {APICURIO_VERSION} on "
        f"Java {registry_java}, Python {platform.python_version()}",
    ]
