"""The lab's CA and certificates (pure file and crypto work; the listeners are tested live in
tests/integration/test_security.py)."""

from __future__ import annotations

import ipaddress
import stat
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab_env import security
from lab_env.config import LabConfig
from lab_env.errors import LabError


@pytest.fixture
def cfg(tmp_path: Path) -> LabConfig:
    return replace(LabConfig(), home=tmp_path / "home", cache=tmp_path / "cache")


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def verifies(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):
        return False
    return True


def test_files_are_created_once_and_kept(cfg: LabConfig) -> None:
    security.ensure_files(cfg)
    first = {p.name: p.read_bytes() for p in security.folder(cfg).iterdir() if p.is_file()}
    assert {"ca.pem", "ca.key", "broker.pem", "users.json"} <= set(first)
    security.ensure_files(cfg)
    again = {p.name: p.read_bytes() for p in security.folder(cfg).iterdir() if p.is_file()}
    assert again == first


def test_private_files_are_owner_only(cfg: LabConfig) -> None:
    security.ensure_files(cfg)
    for name in ("ca.key", "broker.pem", "users.json"):
        mode = stat.S_IMODE((security.folder(cfg) / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"


def test_broker_certificate_names_the_lab_host_for_hostname_verification(cfg: LabConfig) -> None:
    security.ensure_files(cfg)
    keystore = security.broker_keystore(cfg).read_bytes()
    assert b"PRIVATE KEY" in keystore and b"CERTIFICATE" in keystore
    server = x509.load_pem_x509_certificate(keystore[keystore.index(b"-----BEGIN CERTIFICATE") :])
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usage
    assert verifies(server, cert(security.ca_file(cfg)))


def test_client_certificate_common_name_is_the_principal(cfg: LabConfig) -> None:
    security.ensure_files(cfg)
    identity = security.client_certificate(cfg, "orders")
    client = cert(identity.cert)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "orders"
    assert verifies(client, cert(security.ca_file(cfg)))
    assert security.client_certificate(cfg, "orders") == identity  # issued once


def test_a_foreign_ca_does_not_vouch_for_lab_certificates(cfg: LabConfig, tmp_path: Path) -> None:
    security.ensure_files(cfg)
    (tmp_path / "other").mkdir()
    other = security.make_ca(tmp_path / "other", "Someone else's CA")
    stranger = security.issue(other, "orders", tmp_path / "other" / "orders")
    assert not verifies(cert(stranger.cert), cert(security.ca_file(cfg)))
    key = security.serialization.load_pem_private_key(stranger.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)


@pytest.mark.parametrize("name", ["", "a b", "../x", "x/y", "ümlaut?"])
def test_unusable_certificate_names_are_refused(cfg: LabConfig, name: str) -> None:
    security.ensure_files(cfg)
    with pytest.raises(LabError, match="cannot name a client certificate"):
        security.client_certificate(cfg, name)


def test_missing_admin_password_is_a_sentence(cfg: LabConfig) -> None:
    with pytest.raises(LabError, match="admin password is unknown"):
        security.admin_password(cfg)


def test_client_configs_name_the_secured_listeners(cfg: LabConfig) -> None:
    security.ensure_files(cfg)
    tls = security.tls_config(cfg, "orders")
    assert tls["bootstrap.servers"] == "127.0.0.1:9192,127.0.0.1:9193,127.0.0.1:9194"
    assert tls["security.protocol"] == "SSL"
    assert tls["ssl.endpoint.identification.algorithm"] == "https"
    sasl = security.sasl_config(cfg, "orders", "secret")
    assert sasl["bootstrap.servers"] == "127.0.0.1:9292,127.0.0.1:9293,127.0.0.1:9294"
    assert (sasl["security.protocol"], sasl["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")


def test_broker_properties_enforce_on_secured_listeners_only(cfg: LabConfig) -> None:
    props = security.broker_properties(cfg)
    assert props["authorizer.class.name"] == security.AUTHORIZER
    assert props["super.users"] == "User:ANONYMOUS;User:admin"
    assert props["listener.name.tls.ssl.client.auth"] == "required"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "allow.everyone.if.no.acl.found" not in props  # Kafka's default: false
