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
        # Before the tool's own arguments: tools with subcommands (kafka-transactions,
        # kafka-metadata-quorum, kafka-features) take their connection options first only.
        connection = ["--bootstrap-server", cfg.bootstrap()]
        if client_config is not None:
            option = {
                "producer-perf-test": "--producer.config",
                "consumer-perf-test": "--command-config",
                "verifiable-producer": "--producer.config",
                "verifiable-consumer": "--consumer.config",
                "console-producer": "--command-config",
                "console-consumer": "--command-config",
            }.get(tool, "--command-config")
            connection += [option, str(client_config)]
        args = [*connection, *args]
    return [
        java.path,
        "-Xmx512m",
        f"-Dlog4j2.configurationFile={resource('log4j2-tools.xml')}",
        "-cp",
        artifacts.classpath(cfg, "tools"),
        TOOLS[tool],
        *args,
    ]


# librdkafka's login modules for a SASL mechanism, by the Java name of the module.
LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def java_client_properties(client: dict[str, str]) -> dict[str, str]:
    """An external cluster's librdkafka security settings (``[client]`` in lab.toml) as the Java
    clients of Kafka's tools spell them: the SASL user and password as a JAAS login, the CA file
    as a PEM trust store, hostname verification "none" as an empty algorithm. Settings without a
    Java spelling here are passed as they are."""
    out = dict(client)
    mechanism = out.pop("sasl.mechanisms", None) or out.get("sasl.mechanism")
    if mechanism:
        out["sasl.mechanism"] = mechanism
    username, password = out.pop("sasl.username", None), out.pop("sasl.password", None)
    if username is not None and password is not None:
        module = LOGIN_MODULES.get(str(mechanism).upper())
        if module is None:
            raise LabError(
                f"Kafka's tools cannot log in with sasl.mechanism={mechanism!r} from a username "
                f"and password; the lab knows {', '.join(sorted(LOGIN_MODULES))}."
            )

        def quoted(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        out["sasl.jaas.config"] = (
            f"{module} required username={quoted(username)} password={quoted(password)};"
        )
    ca = out.pop("ssl.ca.location", None)
    if ca is not None:
        out["ssl.truststore.type"] = "PEM"
        out["ssl.truststore.location"] = ca
    if out.get("ssl.endpoint.identification.algorithm", "").lower() == "none":
        out["ssl.endpoint.identification.algorithm"] = ""
    return out


def properties_text(settings: dict[str, Any]) -> str:
    """``settings`` as a Java properties file, which reads a backslash as an escape."""

    def escaped(text: object) -> str:
        return str(text).replace("\\", "\\\\").replace("\n", "\\n")

    return "".join(f"{k}={escaped(v)}\n" for k, v in settings.items())


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
    security settings (``java_client_properties``), which they override.
    """
    artifacts.fetch(cfg, "tools")
    with tempfile.TemporaryDirectory() as tmp:
        props = None
        settings = {**java_client_properties(cfg.client), **(properties or {})}
        if settings:  # as a Java properties file
            props = Path(tmp) / "client.properties"
            props.write_text(properties_text(settings))
        return subprocess.run(argv(cfg, tool, args, props), capture_output=capture, text=True)


def quorum_leader(cfg: LabConfig) -> int | None:
    """The KRaft quorum's leader, as `kafka-metadata-quorum describe --status` reports it over
    the brokers' listener (with an external cluster's security settings); None if it fails."""
    done = run(cfg, "metadata-quorum", ["describe", "--status"], capture=True)
    for line in done.stdout.splitlines() if done.returncode == 0 else []:
        key, _, value = line.partition(":")
        if key.strip() == "LeaderId" and value.strip().lstrip("-").isdigit():
            return int(value)
    return None
