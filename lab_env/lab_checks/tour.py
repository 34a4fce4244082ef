"""Lab 00: facts about your cluster, checked against what the cluster itself reports."""

from __future__ import annotations

from typing import Any

from confluent_kafka.admin import ConfigResource

from lab_env import tools
from lab_env.api import Lab
from lab_env.checks import passed, require

HINTS = {
    "cluster_id": "the admin client's describe_cluster() result has it",
    "brokers": "count the nodes describe_cluster() returns (or the brokers in list_topics())",
    "quorum_leader": "`lab kafka metadata-quorum describe --status` prints the LeaderId",
    "default_replication_factor": "describe_configs() on a BROKER resource; the key is "
    "default.replication.factor, and its value is a string: convert it",
    "min_insync_replicas": "describe_configs() on a BROKER resource, key min.insync.replicas",
    "registry_compatibility": "lab.registry().get_compatibility()",
}


def truth(lab: Lab) -> dict[str, Any]:
    admin = lab.admin()
    cluster = admin.describe_cluster(request_timeout=10).result()
    broker = ConfigResource(ConfigResource.Type.BROKER, str(cluster.nodes[0].id))
    config = admin.describe_configs([broker])[broker].result()
    return {
        "cluster_id": cluster.cluster_id,
        "brokers": len(cluster.nodes),
        # From the lab's own view of its nodes, or, for a cluster it does not run, from the
        # quorum itself (the tool the hint names).
        "quorum_leader": lab.describe()["quorum_leader"] or tools.quorum_leader(lab.config),
        "default_replication_factor": int(config["default.replication.factor"].value),
        "min_insync_replicas": int(config["min.insync.replicas"].value),
        "registry_compatibility": lab.registry().get_compatibility(),
    }


def check_cluster_facts(lab: Lab, answers: dict[str, Any]) -> None:
    require(isinstance(answers, dict), f"answers must be a dict, not {type(answers).__name__}.")
    expected = truth(lab)
    missing = sorted(set(expected) - set(answers))
    require(not missing, f"answers has no {', '.join(missing)}: fill in every key.")
    for key, value in expected.items():
        given = answers[key]
        require(
            given == value,
            f"{key}: you answered {given!r}, the cluster says otherwise. Hint: {HINTS[key]}.",
        )
    passed(f"all {len(expected)} facts match the cluster")
