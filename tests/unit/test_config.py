"""Defaults, overrides and derived addresses of ``lab_env.config``; no process, no network."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from lab_env.config import BROKER_SETTINGS, ENV_KEYS, LabConfig, Ports, load_config, read_properties
from lab_env.errors import LabError


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KAFKA_LAB_* variable, no ./lab.toml and no ~/.config/kafka-lab/lab.toml can leak in."""
    for var in [*ENV_KEYS, "KAFKA_LAB_CONFIG", "KAFKA_LAB_CLIENT_PROPERTIES"]:
        monkeypatch.delenv(var, raising=False)
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def write_toml(tmp_path: Path, text: str, name: str = "custom.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def use_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> Path:
    path = write_toml(tmp_path, text)
    monkeypatch.setenv("KAFKA_LAB_CONFIG", str(path))
    return path


def lab_error(environ: dict[str, str] | None = None) -> str:
    with pytest.raises(LabError) as info:
        load_config(os.environ if environ is None else environ)
    message = str(info.value)
    assert "Traceback" not in message
    return message


# --- defaults -----------------------------------------------------------------------------------


def test_default_ports() -> None:
    ports = LabConfig().ports
    assert ports.brokers == (9092, 9093, 9094)
    assert ports.controllers == (19092, 19093, 19094)
    assert ports.exporters == (7071, 7072, 7073)
    assert (ports.registry, ports.registry_management) == (8081, 8082)
    assert ports.prometheus == 9090
    assert ports.jupyter == 8888


def test_default_backend_host_and_paths(tmp_path: Path) -> None:
    cfg = LabConfig()
    assert cfg.backend == "embedded"
    assert cfg.host == "127.0.0.1"
    assert cfg.home == tmp_path / "xdg_data_home" / "kafka-lab"
    assert cfg.cache == tmp_path / "xdg_cache_home" / "kafka-lab"
    assert cfg.client == {}


def test_broker_settings_teach_durability() -> None:
    assert BROKER_SETTINGS["default.replication.factor"] == "3"
    assert BROKER_SETTINGS["min.insync.replicas"] == "2"
    assert BROKER_SETTINGS["transaction.state.log.replication.factor"] == "3"
    assert BROKER_SETTINGS["transaction.state.log.min.isr"] == "2"
    assert BROKER_SETTINGS["offsets.topic.replication.factor"] == "3"
    assert BROKER_SETTINGS["auto.create.topics.enable"] == "false"


def test_broker_settings_leave_flushing_to_the_os() -> None:
    assert [k for k in BROKER_SETTINGS if k.startswith("log.flush.")] == []


def test_load_config_without_overrides_is_the_defaults() -> None:
    assert load_config({}) == LabConfig()


# --- environment variables ----------------------------------------------------------------------


def test_env_overrides_ports_home_and_backend(tmp_path: Path) -> None:
    cfg = load_config(
        {
            "KAFKA_LAB_BROKER_PORTS": "1,2,3",
            "KAFKA_LAB_REGISTRY_PORT": "18081",
            "KAFKA_LAB_HOME": str(tmp_path / "elsewhere"),
            "KAFKA_LAB_BACKEND": "docker",
        }
    )
    assert cfg.ports.brokers == (1, 2, 3)
    assert cfg.ports.registry == 18081
    assert cfg.ports.controllers == (19092, 19093, 19094)  # untouched
    assert cfg.home == tmp_path / "elsewhere"
    assert cfg.backend == "docker"


def test_env_ports_tolerate_spaces() -> None:
    assert load_config({"KAFKA_LAB_EXPORTER_PORTS": " 7171, 7172 ,7173"}).ports.exporters == (
        7171,
        7172,
        7173,
    )


def test_env_maven_args_are_split_and_home_is_expanded() -> None:
    cfg = load_config({"KAFKA_LAB_MAVEN_ARGS": "-o  -q", "KAFKA_LAB_CACHE": "~/lab-cache"})
    assert cfg.maven_args == ("-o", "-q")
    assert cfg.cache == Path.home() / "lab-cache"


def test_env_heap_and_bootstrap() -> None:
    cfg = load_config({"KAFKA_LAB_BROKER_HEAP": "1g", "KAFKA_LAB_BOOTSTRAP": "kafka:9092"})
    assert cfg.heaps.broker == "1g"
    assert cfg.bootstrap() == "kafka:9092"


def test_empty_env_variable_is_ignored() -> None:
    assert load_config({"KAFKA_LAB_BROKER_PORTS": "", "KAFKA_LAB_BACKEND": ""}) == LabConfig()


@pytest.mark.parametrize("value", ["1,2", "1,2,3,4", "a,b,c", "9092,9093,70000", "0,9093,9094"])
def test_bad_broker_ports_name_the_variable(value: str) -> None:
    message = lab_error({"KAFKA_LAB_BROKER_PORTS": value})
    assert message.startswith("KAFKA_LAB_BROKER_PORTS must be 3 port numbers")
    assert repr(value) in message


def test_non_numeric_single_port_names_the_variable() -> None:
    assert lab_error({"KAFKA_LAB_REGISTRY_PORT": "http"}) == (
        "KAFKA_LAB_REGISTRY_PORT must be a port number, got 'http'."
    )


@pytest.mark.parametrize("value", ["0", "65536", "-1"])
def test_out_of_range_single_port_names_the_variable(value: str) -> None:
    message = lab_error({"KAFKA_LAB_PROMETHEUS_PORT": value})
    assert message == (
        f"KAFKA_LAB_PROMETHEUS_PORT must be a port number between 1 and 65535, got {value}."
    )


def test_unknown_backend_names_the_variable_and_the_choices() -> None:
    message = lab_error({"KAFKA_LAB_BACKEND": "kubernetes"})
    assert message.startswith("KAFKA_LAB_BACKEND:")
    assert "embedded, docker, external" in message
    assert "'kubernetes'" in message


# --- the TOML file ------------------------------------------------------------------------------

FULL_TOML = """
backend = "external"
host = "10.0.0.5"
maven_args = "-o -q"
registry_url = "https://registry.example:8443"

[ports]
brokers = [29092, 29093, 29094]
registry = 28081

[heaps]
broker = "512m"

[client]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "PLAIN"
"""


def test_toml_file_named_by_kafka_lab_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_toml(monkeypatch, tmp_path, FULL_TOML)
    cfg = load_config(os.environ)
    assert cfg.backend == "external"
    assert cfg.host == "10.0.0.5"
    assert cfg.maven_args == ("-o", "-q")
    assert cfg.ports.brokers == (29092, 29093, 29094)
    assert cfg.ports.registry == 28081
    assert cfg.ports.prometheus == 9090  # untouched
    assert cfg.heaps.broker == "512m"
    assert cfg.client == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN"}
    assert cfg.registry() == "https://registry.example:8443"
    assert cfg.bootstrap() == "10.0.0.5:29092,10.0.0.5:29093,10.0.0.5:29094"


def test_env_wins_over_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    use_toml(monkeypatch, tmp_path, FULL_TOML)
    cfg = load_config(
        {**os.environ, "KAFKA_LAB_REGISTRY_PORT": "38081", "KAFKA_LAB_BACKEND": "docker"}
    )
    assert cfg.ports.registry == 38081
    assert cfg.backend == "docker"
    assert cfg.ports.brokers == (29092, 29093, 29094)  # still from the file


def test_lab_toml_in_the_working_directory_is_read(tmp_path: Path) -> None:
    Path("lab.toml").write_text('backend = "docker"\n')
    assert load_config({}).backend == "docker"


def test_user_config_dir_lab_toml_is_read(tmp_path: Path) -> None:
    user = tmp_path / "xdg_config_home" / "kafka-lab" / "lab.toml"
    user.parent.mkdir(parents=True)
    user.write_text("[ports]\nprometheus = 19090\n")
    assert load_config({}).ports.prometheus == 19090


def test_kafka_lab_config_wins_over_lab_toml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Path("lab.toml").write_text('backend = "docker"\n')
    use_toml(monkeypatch, tmp_path, 'backend = "external"\n')
    assert load_config(os.environ).backend == "external"


def test_unknown_toml_key_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = use_toml(monkeypatch, tmp_path, 'colour = "blue"\n')
    message = lab_error()
    assert message.startswith(f"{path}: unknown setting 'colour'")
    assert "ports.brokers" in message  # lists the known ones


def test_unknown_key_in_ports_table_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_toml(monkeypatch, tmp_path, "[ports]\nkafka = 1\n")
    assert "unknown setting 'ports.kafka'" in lab_error()


def test_bad_port_list_in_toml_names_file_and_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = use_toml(monkeypatch, tmp_path, "[ports]\nbrokers = [1, 2]\n")
    assert lab_error() == f"{path}: ports.brokers must be 3 port numbers, got [1, 2]."


def test_bad_backend_in_toml_names_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = use_toml(monkeypatch, tmp_path, 'backend = "k8s"\n')
    assert lab_error().startswith(f"{path}: backend: backend must be one of")


def test_invalid_toml_is_a_lab_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = use_toml(monkeypatch, tmp_path, "backend = \n[ports\n")
    assert lab_error().startswith(f"{path} is not valid TOML:")


def test_missing_kafka_lab_config_file_is_a_lab_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("KAFKA_LAB_CONFIG", str(missing))
    assert lab_error() == f"KAFKA_LAB_CONFIG names {missing}, which does not exist."


def test_scalar_where_toml_expects_three_ports_is_a_lab_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_toml(monkeypatch, tmp_path, "[ports]\nbrokers = 9092\n")
    assert "ports.brokers must be 3 port numbers" in lab_error()


def test_client_that_is_not_a_table_is_a_lab_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_toml(monkeypatch, tmp_path, 'client = "SASL_SSL"\n')
    assert "client" in lab_error()


def test_fractional_port_in_toml_is_a_lab_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_toml(monkeypatch, tmp_path, "[ports]\nregistry = 8081.7\n")
    assert "ports.registry must be a port number" in lab_error()


def test_kafka_lab_config_is_taken_from_the_given_environ(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'backend = "docker"\n')
    assert "KAFKA_LAB_CONFIG" not in os.environ
    assert load_config({"KAFKA_LAB_CONFIG": str(path)}).backend == "docker"


# --- client properties --------------------------------------------------------------------------

PROPERTIES = """# a comment
! another comment

security.protocol = SASL_SSL
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required password="a=b";
   sasl.mechanism=PLAIN
"""


def test_read_properties_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = write_toml(tmp_path, PROPERTIES, "client.properties")
    assert read_properties(path) == {
        "security.protocol": "SASL_SSL",
        "sasl.jaas.config": (
            'org.apache.kafka.common.security.plain.PlainLoginModule required password="a=b";'
        ),
        "sasl.mechanism": "PLAIN",
    }


def test_read_properties_rejects_a_line_without_equals(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "a=1\njust-a-key\n", "client.properties")
    with pytest.raises(LabError) as info:
        read_properties(path)
    assert str(info.value) == f"{path}: line 'just-a-key' is not key=value."


def test_read_properties_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="does not exist"):
        read_properties(tmp_path / "absent.properties")


def test_client_properties_env_merges_over_toml_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_toml(monkeypatch, tmp_path, '[client]\n"security.protocol" = "SSL"\n"client.id" = "lab"\n')
    props = write_toml(tmp_path, "security.protocol=SASL_SSL\n", "client.properties")
    cfg = load_config({**os.environ, "KAFKA_LAB_CLIENT_PROPERTIES": str(props)})
    assert cfg.client == {"security.protocol": "SASL_SSL", "client.id": "lab"}


def test_bad_client_properties_file_via_env_is_a_lab_error(tmp_path: Path) -> None:
    props = write_toml(tmp_path, "oops\n", "client.properties")
    assert "is not key=value" in lab_error({"KAFKA_LAB_CLIENT_PROPERTIES": str(props)})


# --- derived addresses --------------------------------------------------------------------------


def test_bootstrap_lists_every_broker_on_the_host() -> None:
    assert LabConfig().bootstrap() == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert replace(LabConfig(), host="10.1.2.3").bootstrap().split(",")[2] == "10.1.2.3:9094"


def test_explicit_bootstrap_wins() -> None:
    assert replace(LabConfig(), bootstrap_servers="b:1").bootstrap() == "b:1"


def test_registry_url_per_backend() -> None:
    assert LabConfig().registry() == "http://127.0.0.1:8081/apis/ccompat/v7"
    assert replace(LabConfig(), backend="docker").registry() == "http://127.0.0.1:8081"
    explicit = replace(LabConfig(), registry_url="https://sr.example")
    assert explicit.registry() == "https://sr.example"


def test_prometheus_url() -> None:
    assert LabConfig().prometheus() == "http://127.0.0.1:9090"
    assert replace(LabConfig(), prometheus_url="http://p:1").prometheus() == "http://p:1"


def test_client_config_starts_from_bootstrap_and_adds_client_settings() -> None:
    cfg = replace(LabConfig(), client={"security.protocol": "SSL"})
    assert cfg.client_config() == {
        "bootstrap.servers": "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094",
        "security.protocol": "SSL",
    }
    assert LabConfig().client_config() == {"bootstrap.servers": LabConfig().bootstrap()}


# --- Ports.named --------------------------------------------------------------------------------


def test_named_ports_list_every_lab_port_once() -> None:
    ports = Ports()
    named = ports.named()
    expected = [
        *ports.brokers,
        *ports.controllers,
        *ports.exporters,
        *ports.tls,
        *ports.sasl,
        ports.registry,
        ports.registry_management,
        ports.prometheus,
        ports.lag_exporter,
    ]
    assert sorted(named.values()) == sorted(expected)
    assert len(set(named.values())) == len(named) == 19


def test_named_ports_have_distinct_descriptions_naming_the_component() -> None:
    named = Ports().named()
    assert len({d.lower() for d in named}) == len(named)
    assert named["kafka-2 (controller listener)"] == 19093
    assert named["kafka-3 (broker listener)"] == 9094
    assert named["kafka-1 (JMX exporter)"] == 7071
    assert named["schema registry (management)"] == 8082
    assert named["prometheus"] == 9090


def test_named_ports_follow_overrides() -> None:
    named = load_config({"KAFKA_LAB_CONTROLLER_PORTS": "29192,29193,29194"}).ports.named()
    assert named["kafka-3 (controller listener)"] == 29194
