"""Every Kafka node's configuration, for every backend: one generator.

The embedded backend writes the result as each node's ``server.properties``; the docker backend
(:mod:`lab_env.compose`) splits the same settings between a ``server.properties`` mounted where the
``apache/kafka`` image reads one and the few variables its entrypoint insists on. Only addresses,
paths and the quorum's style differ between them; listeners, security and durability defaults
cannot, because both come from here.

Each node is a combined broker and controller with four listeners:

- ``PLAINTEXT`` (docker: ``INTERNAL`` between containers, ``EXTERNAL`` for the host): the teaching
  listener, no authentication;
- ``CONTROLLER``: the KRaft quorum;
- ``TLS``: mutual TLS, the principal is the client certificate's common name;
- ``SASL``: TLS plus SCRAM-SHA-512 passwords (security protocol ``SASL_SSL``).

The secured listeners are not named ``SSL`` and ``SASL_SSL``: the image's entrypoint, seeing an
advertised listener whose name ends in ``SSL``, demands JKS keystore credentials
(``KAFKA_SSL_KEYSTORE_FILENAME`` ...) and exits without them, and with them sets a keystore
password, which Kafka refuses for the PEM keystore the lab uses. A listener's name is only a name;
``listener.security.protocol.map`` gives each its protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab_env import security
from lab_env.config import BROKER_SETTINGS, LabConfig

CONTROLLER = "CONTROLLER"
TLS, SASL = security.TLS_LISTENER, security.SASL_LISTENER


@dataclass(frozen=True)
class Listener:
    """One listener: its name, security protocol, the address it binds and the one it advertises.

    An empty host in ``bind`` means every interface (what a container wants)."""

    name: str
    protocol: str
    bind: str
    advertised: str

    def __post_init__(self) -> None:
        for part in (self.name, self.protocol, self.bind, self.advertised):
            if any(c in part for c in ",= \n"):
                raise ValueError(f"listener {self.name}: {part!r} cannot be part of a listener")


def secured(tls: tuple[str, str], sasl: tuple[str, str]) -> list[Listener]:
    """The two secured listeners every node has, each given as (bind, advertised); the module's
    docstring says why they are named as they are."""
    return [Listener(TLS, "SSL", *tls), Listener(SASL, "SASL_SSL", *sasl)]


def node_properties(
    cfg: LabConfig,
    node_id: int,
    listeners: list[Listener],
    inter_broker: str,
    quorum: dict[str, str],
    log_dir: str,
    security_files: str | None = None,
) -> dict[str, str]:
    """A node's complete configuration. ``quorum`` is ``controller.quorum.bootstrap.servers``
    (a dynamic quorum, KIP-853) or ``controller.quorum.voters`` (a static one); ``security_files``
    is where the node finds the lab's CA and keystore (default: the lab's security folder)."""
    names = [listener.name for listener in listeners]
    if len(set(names)) != len(names) or CONTROLLER not in names or inter_broker not in names:
        raise ValueError(f"node {node_id}: listeners {names} need CONTROLLER and {inter_broker}")
    if set(quorum) not in ({"controller.quorum.bootstrap.servers"}, {"controller.quorum.voters"}):
        raise ValueError(f"node {node_id}: quorum {sorted(quorum)} is neither dynamic nor static")
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        **quorum,
        "listeners": ",".join(f"{x.name}://{x.bind}" for x in listeners),
        "advertised.listeners": ",".join(f"{x.name}://{x.advertised}" for x in listeners),
        "listener.security.protocol.map": ",".join(f"{x.name}:{x.protocol}" for x in listeners),
        "controller.listener.names": CONTROLLER,
        "inter.broker.listener.name": inter_broker,
        "log.dirs": log_dir,
        **BROKER_SETTINGS,
        **security.broker_properties(cfg, security_files),
    }


def properties_text(props: dict[str, str], header: str) -> str:
    """``props`` as a Java properties file. Values are written as they are: none of the lab's
    settings holds a character that needs escaping there, which :func:`check_plain` enforces."""
    check_plain(props)
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def check_plain(props: dict[str, str]) -> None:
    for key, value in props.items():
        if any(c in key + value for c in "\\\n\r") or any(c in key for c in "=: #!"):
            raise ValueError(f"{key}={value!r} would need escaping in a properties file")


def parse_properties(text: str) -> dict[str, str]:
    """A properties file as the broker reads it, for the lab's plain files: the last value of a
    repeated key wins, comments and blank lines are skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "!")):
            continue
        key, _, value = stripped.partition("=")
        out[key.strip()] = value.strip()
    return out
