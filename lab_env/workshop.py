"""Shared-cluster workshops: one lab cluster, many learners, each in a namespace of their own.

    lab workshop add-learner alice      # SCRAM user + prefixed ACLs; prints alice's lab.toml
    lab workshop reset-learner alice    # delete alice's topics and consumer groups
    lab workshop remove-learner alice   # delete the user and every ACL it holds

A learner's namespace is the prefix ``<name>.``: with ``prefix = "alice."`` in the learner's
lab.toml, ``lab.topic("orders")`` is ``alice.orders`` and ``lab.group("billing")`` is
``alice.billing``. On the SASL_SSL listener the learner's ACLs (``GRANTS``, PREFIXED patterns)
allow their own topics, groups and transactional ids and nothing else, except writing their
check attempts to the progress topic. The instructor's commands act as the super user ``admin``
on the SASL_SSL listener.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from lab_env import progress, security
from lab_env.api import Lab
from lab_env.errors import LabError
from lab_env.lab_checks.security_acls import allow, connect, grant, revoke_all
from lab_env.terminal import err

# No dot: it separates the learner's name from their topic names, so "ali." never covers
# "alice."'s topics.
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# What a learner may do in their namespace (PREFIXED "<name>."). DELETE and DESCRIBE_CONFIGS
# beside read/write/create/describe because the labs clean up their own topics and groups and
# read their topics' settings; transactional ids because lab 04 uses transactions.
CLUSTER = "kafka-cluster"  # the name of Kafka's one CLUSTER resource
GRANTS: dict[ResourceType, tuple[AclOperation, ...]] = {
    ResourceType.TOPIC: (
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.CREATE,
        AclOperation.DESCRIBE,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.DELETE,
    ),
    ResourceType.GROUP: (AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DELETE),
    ResourceType.TRANSACTIONAL_ID: (AclOperation.WRITE, AclOperation.DESCRIBE),
}


@dataclass(frozen=True)
class Learner:
    name: str
    password: str
    snippet: str  # the learner's lab.toml


def learner_name(name: str) -> str:
    if not NAME.fullmatch(name or ""):
        raise LabError(
            f"{name!r} cannot name a learner: start with a letter, then letters, digits, '_' or "
            "'-' (at most 64; no dots: a dot separates the name from the learner's topics)."
        )
    return name


def prefix_of(name: str) -> str:
    return f"{learner_name(name)}."


def principal(name: str) -> str:
    return f"User:{name}"


def bindings(name: str) -> list[AclBinding]:
    """The learner's ACLs: their namespace, WRITE on the progress topic (LITERAL), and DESCRIBE
    and DESCRIBE_CONFIGS on the cluster. The last two read only: lab 00's tour reads the
    cluster's id, controller, quorum and a broker's settings (Kafka masks sensitive ones). They
    also list every group's name (ListGroups); other learners' groups stay closed to DESCRIBE
    and READ."""
    prefix, who = prefix_of(name), principal(name)
    own = [
        allow(who, resource, prefix, operation, ResourcePatternType.PREFIXED)
        for resource, operations in GRANTS.items()
        for operation in operations
    ]
    return [
        *own,
        allow(who, ResourceType.TOPIC, progress.topic_name(), AclOperation.WRITE),
        allow(who, ResourceType.BROKER, CLUSTER, AclOperation.DESCRIBE),
        allow(who, ResourceType.BROKER, CLUSTER, AclOperation.DESCRIBE_CONFIGS),
    ]


def snippet(lab: Lab, name: str, password: str) -> str:
    """The learner's lab.toml: the SASL_SSL listener as ``name``, their prefix, their name."""
    sasl = security.sasl_config(lab.config, name, password)
    client = {k: v for k, v in sasl.items() if k != "bootstrap.servers"}
    settings = {
        "backend": "external",
        "bootstrap_servers": sasl["bootstrap.servers"],
        "registry_url": lab.registry_url,
        "prometheus_url": lab.prometheus_url,
        "learner": name,
        "prefix": prefix_of(name),
    }
    return "\n".join(
        [
            f"# lab.toml for learner {name}: keep it private, it holds {name}'s password.",
            *(f"{key} = {json.dumps(value)}" for key, value in settings.items()),
            "",
            "[client]",
            *(f"{json.dumps(key)} = {json.dumps(value)}" for key, value in client.items()),
            "",
        ]
    )


def admin_client(lab: Lab) -> AdminClient:
    """The super user on the SASL_SSL listener, once it answers (else a sentence)."""
    config = lab.admin_sasl_config()
    outcome = connect(config)
    if not outcome.allowed:
        raise LabError(
            f"The SASL_SSL listener ({config['bootstrap.servers']}) refused or did not answer "
            f"the lab's admin user ({outcome.code}: {outcome.detail}). Is the lab up? "
            "`lab status` says."
        )
    return AdminClient(config)


def user_exists(admin: AdminClient, name: str) -> bool:
    future = admin.describe_user_scram_credentials([name], request_timeout=30)[name]
    try:
        future.result()
        return True
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.RESOURCE_NOT_FOUND:
            return False
        raise LabError(f"Could not look up user {name!r}: {exc.args[0].str()}") from None


def _user_exists(lab: Lab, name: str) -> bool:
    with admin_client(lab) as admin:
        return user_exists(admin, name)


def add_learner(lab: Lab, name: str, password: str | None = None) -> Learner:
    """Create (or re-key) the learner's SCRAM user and grant their namespace; the progress
    topic is created too, since learners may only write to it. Every broker knows the user and
    its grants on return (the metadata barrier)."""
    learner_name(name)
    password = password or secrets.token_urlsafe(12)
    with admin_client(lab) as admin:
        security.upsert_user(admin, name, password)
        try:
            grant(admin, bindings(name))
        except KafkaException as exc:
            raise LabError(f"Granting {name}'s ACLs failed: {exc.args[0].str()}") from None
    progress.ensure_topic(lab)
    lab.wait_for_metadata()
    return Learner(name, password, snippet(lab, name, password))


def remove_learner(lab: Lab, name: str) -> int:
    """Delete the learner's user and every ACL it holds; returns how many ACLs went."""
    learner_name(name)
    with admin_client(lab) as admin:
        existed = user_exists(admin, name)
        try:
            removed = revoke_all(admin, principal(name))
        except KafkaException as exc:
            raise LabError(f"Removing {name}'s ACLs failed: {exc.args[0].str()}") from None
        if not existed and not removed:
            raise LabError(f"There is no learner {name!r}: no such user, no ACLs.")
        security.delete_user(admin, name)
    lab.wait_for_metadata()
    return removed


def learner_topics(lab: Lab, name: str) -> list[str]:
    prefix = prefix_of(name)
    return sorted(t for t in lab.admin().list_topics(timeout=10).topics if t.startswith(prefix))


def learner_groups(lab: Lab, name: str) -> list[str]:
    prefix = prefix_of(name)
    listing = lab.admin().list_consumer_groups(request_timeout=30).result()
    return sorted(g.group_id for g in listing.valid if g.group_id.startswith(prefix))


def reset_learner(lab: Lab, name: str) -> tuple[list[str], list[str]]:
    """Delete every topic and consumer group in the learner's namespace (the user and its
    ACLs stay); returns what was deleted."""
    topics, groups = learner_topics(lab, name), learner_groups(lab, name)
    if not topics and not groups and not _user_exists(lab, name):
        raise LabError(f"There is no learner {name!r}: no such user, and no {name}.* topics.")
    for topic in topics:
        lab.delete_topic(topic)
    if groups:
        lab.delete_groups(*groups)
    return topics, groups


# -- the `lab workshop` command ------------------------------------------------------------------


def cmd_add(args: argparse.Namespace) -> int:
    learner = add_learner(Lab(), args.name, args.password)
    sys.stdout.write(learner.snippet)
    err.print(
        f"Learner {learner.name} may use topics, groups and transactional ids starting with "
        f"{prefix_of(learner.name)!r} on the SASL_SSL listener. Hand them the lab.toml above "
        "(and the CA file it names)."
    )
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    removed = remove_learner(Lab(), args.name)
    err.print(f"Learner {args.name} removed: the user and {removed} ACL(s).")
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    topics, groups = reset_learner(Lab(), args.name)
    err.print(
        f"Learner {args.name} reset: {len(topics)} topic(s) and {len(groups)} group(s) deleted"
        + (f" ({', '.join(topics + groups)})." if topics or groups else ".")
    )
    return 0


def add_parser(sub: Any) -> None:
    workshop = sub.add_parser(
        "workshop", help="shared-cluster workshops: learners and their namespaces"
    )
    actions = workshop.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add-learner", help="a SCRAM user with ACLs on its own prefix; prints its lab.toml"
    )
    add.add_argument("name", help="letters, digits, '_' or '-'; the prefix is NAME.")
    add.add_argument("--password", help="default: generated")
    add.set_defaults(run=lambda backend, args: cmd_add(args))
    remove = actions.add_parser("remove-learner", help="delete the user and its ACLs")
    remove.add_argument("name")
    remove.set_defaults(run=lambda backend, args: cmd_remove(args))
    reset = actions.add_parser("reset-learner", help="delete the learner's topics and groups")
    reset.add_argument("name")
    reset.set_defaults(run=lambda backend, args: cmd_reset(args))
