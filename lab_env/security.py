"""The lab's secured listeners: its own certificate authority, certificates, SCRAM users.

Every broker has, beside the plaintext teaching listener, two secured listeners that really
enforce (see README, "Security"):

- ``TLS`` (ports.tls; protocol SSL): TLS with client certificates required (mutual TLS). The
  principal is the certificate's common name (``CN=orders`` -> ``User:orders``).
- ``SASL`` (ports.sasl; protocol SASL_SSL): TLS plus SCRAM-SHA-512 passwords. The principal is
  the user name.

(lab_env/broker_config.py says why the listeners are not named after their protocols.)

Authorization is KRaft's ``StandardAuthorizer``: on the secured listeners nothing is allowed
without an ACL, except for the super user ``admin``. The plaintext and controller listeners
authenticate no one; their principal, ``User:ANONYMOUS``, is a super user so the teaching
listener (and broker-to-broker traffic) keeps working for the other modules.

Files live in ``<home>/security`` as PEM: ``ca.pem`` (the trust anchor every client needs),
``broker.pem`` (the brokers' key and certificate, valid for 127.0.0.1 and localhost, so clients
verify the host name), ``clients/<name>.pem`` and ``.key`` per issued client certificate, and
``users.json`` (the generated admin password). Keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab_env.config import REPO, LabConfig
from lab_env.errors import LabError
from lab_env.filelock import exclusive

ADMIN = "admin"
MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192  # Kafka's minimum for SCRAM-SHA-512 is 4096
VALID_DAYS = 825
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# The secured listeners' names (lab_env/broker_config.py says why they are not SSL and SASL_SSL).
TLS_LISTENER, SASL_LISTENER = "TLS", "SASL"


@dataclass(frozen=True)
class Identity:
    """A certificate and its private key, as PEM files."""

    cert: Path
    key: Path


DOCKER_FOLDER = ".lab-security"  # the docker backend's, relative to the repository; git-ignored


def folder(cfg: LabConfig) -> Path:
    """The lab's CA, keystore, users and client certificates. The docker backend keeps them in
    the repository (git-ignored), which its brokers mount and its JupyterLab container, running
    from the same repository, shares: a client certificate issued there is one the brokers trust."""
    if cfg.backend == "docker":
        return REPO / DOCKER_FOLDER
    return cfg.home / "security"


def ca_file(cfg: LabConfig) -> Path:
    return folder(cfg) / "ca.pem"


def broker_keystore(cfg: LabConfig) -> Path:
    """Key and certificate in one PEM file: what Kafka's ``ssl.keystore.type=PEM`` reads."""
    return folder(cfg) / "broker.pem"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kafka Microservices Lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(directory: Path, common_name: str = "Kafka Lab CA") -> Identity:
    """A self-signed certificate authority in ``directory`` (``ca.pem``, ``ca.key``)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    identity = Identity(directory / "ca.pem", directory / "ca.key")
    _write_private(identity.key, _pem_key(key))
    identity.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return identity


def issue(
    ca: Identity,
    common_name: str,
    out: Path,
    server: bool = False,
    hosts: tuple[str, ...] = (),
    valid_days: int = VALID_DAYS,
) -> Identity:
    """A certificate for ``common_name`` signed by ``ca``: ``out.pem`` and ``out.key``.

    Server certificates name ``hosts`` (IP addresses or DNS names) as subject alternative names:
    that is what a client's host-name verification compares with the address it dialled.
    A negative ``valid_days`` issues a certificate that has already expired (for tests).
    """
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise LabError(f"{ca.key} is not the lab's CA key.")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, now + dt.timedelta(days=valid_days)) - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                if server
                else [ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    identity = Identity(out.with_suffix(".pem"), out.with_suffix(".key"))
    _write_private(identity.key, _pem_key(key))
    identity.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return identity


def lab_ca(cfg: LabConfig) -> Identity:
    return Identity(ca_file(cfg), folder(cfg) / "ca.key")


def ensure_files(cfg: LabConfig) -> None:
    """Create the CA, the brokers' keystore and the admin password once; later calls keep them
    (clients that trust ``ca.pem`` keep working across ``lab down``/``up``)."""
    ca = lab_ca(cfg)
    if not (ca.cert.is_file() and ca.key.is_file()):
        folder(cfg).mkdir(parents=True, exist_ok=True)
        make_ca(folder(cfg))
        broker_keystore(cfg).unlink(missing_ok=True)
    if not broker_keystore(cfg).is_file():
        hosts = tuple(dict.fromkeys((cfg.host, "localhost", "127.0.0.1")))
        server = issue(ca, "kafka-lab-broker", folder(cfg) / "broker-cert", True, hosts)
        _write_private(broker_keystore(cfg), server.key.read_bytes() + server.cert.read_bytes())
        server.key.unlink()
    users = folder(cfg) / "users.json"
    if not users.is_file():
        _write_private(users, json.dumps({ADMIN: secrets.token_urlsafe(18)}).encode())


def admin_password(cfg: LabConfig) -> str:
    users = folder(cfg) / "users.json"
    try:
        return str(json.loads(users.read_text())[ADMIN])
    except (OSError, ValueError, KeyError):
        raise LabError(
            f"{users} is missing or unreadable, so the lab's admin password is unknown. "
            "Run `lab down` and `lab up` to create it again."
        ) from None


def client_certificate(cfg: LabConfig, name: str) -> Identity:
    """A client certificate for ``name`` (principal ``User:<name>`` on the TLS listener),
    issued by the lab's CA on first use."""
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise LabError(
            f"{name!r} cannot name a client certificate: use letters, digits, '-', '_' or '.'."
        )
    out = folder(cfg) / "clients" / name
    identity = Identity(out.with_suffix(".pem"), out.with_suffix(".key"))
    # Two processes asking for the same name at once (two kernels, two test workers) must not
    # leave one's certificate beside the other's key.
    with exclusive(out.parent / ".lock"):
        if not (identity.cert.is_file() and identity.key.is_file()):
            issue(lab_ca(cfg), name, out)
    return identity


def broker_properties(cfg: LabConfig, files: str | None = None) -> dict[str, str]:
    """What every node adds to its configuration for the secured listeners. ``files`` is where
    the broker finds ``ca.pem`` and ``broker.pem`` (default: the lab's security folder; the
    docker backend mounts a copy into its containers)."""
    where = files or str(folder(cfg))
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": f"{where}/{broker_keystore(cfg).name}",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": f"{where}/{ca_file(cfg).name}",
        f"listener.name.{TLS_LISTENER.lower()}.ssl.client.auth": "required",
        # "CN=orders,O=Kafka Microservices Lab" -> User:orders. The rule spells "CN=" as "CN."
        # because the apache/kafka image drops environment values that contain "=".
        "ssl.principal.mapping.rules": "RULE:^CN.([^,]+),.*$/$1/,DEFAULT",
        "sasl.enabled.mechanisms": MECHANISM,
        f"listener.name.{SASL_LISTENER.lower()}.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "authorizer.class.name": AUTHORIZER,
        "super.users": f"User:ANONYMOUS;User:{ADMIN}",
    }


def share_with_containers(cfg: LabConfig) -> Path:
    """Make the docker backend's security folder ready for its containers, whose users are not
    yours: the CA certificate and the brokers' keystore readable by all (acceptable for a lab key
    valid only for 127.0.0.1 and localhost, never for a real deployment). The CA's key, the
    users' passwords and client keys stay yours alone."""
    ensure_files(cfg)
    for shared in (ca_file(cfg), broker_keystore(cfg)):
        shared.chmod(0o644)
    return folder(cfg)


def tls_config(cfg: LabConfig, name: str) -> dict[str, str]:
    """librdkafka settings for the TLS listener as ``User:<name>`` (a lab-issued certificate)."""
    identity = client_certificate(cfg, name)
    return {
        "bootstrap.servers": ",".join(f"{cfg.host}:{p}" for p in cfg.ports.tls),
        "security.protocol": "SSL",
        "ssl.ca.location": str(ca_file(cfg)),
        "ssl.certificate.location": str(identity.cert),
        "ssl.key.location": str(identity.key),
        "ssl.endpoint.identification.algorithm": "https",
    }


def sasl_config(cfg: LabConfig, user: str, password: str) -> dict[str, str]:
    """librdkafka settings for the SASL_SSL listener as SCRAM user ``user``."""
    return {
        "bootstrap.servers": ",".join(f"{cfg.host}:{p}" for p in cfg.ports.sasl),
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": str(ca_file(cfg)),
        "ssl.endpoint.identification.algorithm": "https",
    }


def upsert_user(admin: AdminClient, user: str, password: str) -> None:
    """Create (or reset the password of) SCRAM user ``user``; SCRAM credentials live in the
    cluster's metadata, so every broker accepts them at once."""
    upsertion = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS), password.encode()
    )
    try:
        for future in admin.alter_user_scram_credentials([upsertion], request_timeout=30).values():
            future.result()
    except KafkaException as exc:
        raise LabError(f"Creating SCRAM user {user!r} failed: {exc.args[0].str()}") from None


def delete_user(admin: AdminClient, user: str) -> None:
    """Delete SCRAM user ``user`` (fine if it does not exist)."""
    deletion = UserScramCredentialDeletion(user, ScramMechanism.SCRAM_SHA_512)
    for future in admin.alter_user_scram_credentials([deletion], request_timeout=30).values():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.RESOURCE_NOT_FOUND:
                reason = exc.args[0].str()
                raise LabError(f"Deleting SCRAM user {user!r} failed: {reason}") from None


def ensure_admin_user(cfg: LabConfig, admin: AdminClient) -> None:
    upsert_user(admin, ADMIN, admin_password(cfg))
