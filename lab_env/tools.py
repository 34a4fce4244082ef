"""Kafka's own command-line tools (`lab kafka TOOL ...`), run from the cached `kafka-tools` jars.

The names are those of the release's ``bin/kafka-*.sh`` scripts without the prefix and suffix, so
``kafka-topics.sh --list`` becomes ``lab kafka topics --list``. Where the tool takes
``--bootstrap-server`` and none is given, the lab's is added.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lab_env import artifacts
from lab_env.config import LabConfig
from lab_env.errors import LabError
from lab_env.java import find_java
from lab_env.kafka_nodes import resource

TOOLS: dict[str, str] = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "share-groups": "org.apache.kafka.tools.consumer.group.ShareGroupCommand",
    "groups": "org.apache.kafka.tools.GroupsCommand",
    "configs": "org.apache.kafka.tools.ConfigCommand",
    "acls": "org.apache.kafka.tools.AclCommand",
    "producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
    "transactions": "org.apache.kafka.tools.TransactionsCommand",
    "metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "verifiable-producer": "org.apache.kafka.tools.VerifiableProducer",
    "verifiable-consumer": "org.apache.kafka.tools.VerifiableConsumer",
    "console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "features": "org.apache.kafka.tools.FeatureCommand",
    "cluster": "org.apache.kafka.tools.ClusterTool",
    "leader-election": "org.apache.kafka.tools.LeaderElectionCommand",
    "reassign-partitions": "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
    "delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    "broker-api-versions": "org.apache.kafka.tools.BrokerApiVersionsCommand",
    "client-metrics": "org.apache.kafka.tools.ClientMetricsCommand",
}
# Tools with no --bootstrap-server option (or where it means something else).
NO_BOOTSTRAP = {"cluster"}


def argv(
    cfg: LabConfig, tool: str, args: list[str], client_config: Path | None = None
) -> list[str]:
    """The java command line for one tool invocation."""
    if tool not in TOOLS:
        raise LabError(f"Unknown Kafka tool {tool!r}. Available: {', '.join(sorted(TOOLS))}.")
    java = find_java(cfg)
    args = list(args)
    wants_help = any(a in ("-h", "--help") for a in args)
    # --bootstrap-controller talks to the quorum directly and excludes --bootstrap-server.
    given = any(
        a.split("=", 1)[0] in ("--bootstrap-server", "--bootstrap-controller") for a in args
    )
    if tool not in NO_BOOTSTRAP and not given and not wants_help:
        args = ["--bootstrap-server", cfg.bootstrap(), *args]
        if client_config is not None:
            option = {
                "producer-perf-test": "--producer.config",
                "consumer-perf-test": "--command-config",
                "verifiable-producer": "--producer.config",
                "verifiable-consumer": "--consumer.config",
                "console-producer": "--command-config",
                "console-consumer": "--command-config",
            }.get(tool, "--command-config")
            args += [option, str(client_config)]
    return [
        java.path,
        "-Xmx512m",
        f"-Dlog4j2.configurationFile={resource('log4j2-tools.xml')}",
        "-cp",
        artifacts.classpath(cfg, "tools"),
        TOOLS[tool],
        *args,
    ]


def run(
    cfg: LabConfig,
    tool: str,
    args: list[str],
    capture: bool = False,
    properties: dict[str, Any] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool to completion (fetching the tools first if needed).

    ``properties`` are client settings for the tool (e.g. a consumer's fetch settings); they go
    into the one properties file the tool is given, together with an external cluster's
    security settings, which they override.
    """
    artifacts.fetch(cfg, "tools")
    with tempfile.TemporaryDirectory() as tmp:
        props = None
        settings = {**cfg.client, **(properties or {})}
        if settings:  # as a Java properties file
            props = Path(tmp) / "client.properties"
            props.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        return subprocess.run(argv(cfg, tool, args, props), capture_output=capture, text=True)
