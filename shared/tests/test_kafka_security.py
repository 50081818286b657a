"""TLS and SASL settings reach every Kafka client leadpipe builds, and ones no client could use stop the start
(nothing connects here)."""

import datetime
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from leadpipe_common.admin import admin_client
from leadpipe_common.consumer import BatchApplier, ConsumerRunner
from leadpipe_common.kafka import client_options
from leadpipe_common.local.infra import free_port
from leadpipe_common.producer import Producer
from leadpipe_common.redrive import dead_letter_reader
from leadpipe_common.scan import TopicScan
from leadpipe_common.settings import ConsumerSettings, KafkaSettings, TopicSettings

SECURE = {"KAFKA_BOOTSTRAP_SERVERS": "kafka.example.com:9093", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
          "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "leadpipe",
          "KAFKA_SASL_PASSWORD": "s3cret"}


@pytest.fixture
def secure_env(monkeypatch):
    for name, value in SECURE.items():
        monkeypatch.setenv(name, value)


def connection(client) -> tuple:
    c = getattr(client, "_client", None) or client.client  # aiokafka's connection manager inside each client
    return (c._bootstrap_servers, c._security_protocol, c._sasl_mechanism, c._sasl_plain_username,
            c._sasl_plain_password, c._ssl_context is not None)


async def test_every_client_leadpipe_builds_connects_with_tls_and_sasl(secure_env):
    expected = ("kafka.example.com:9093", "SASL_SSL", "SCRAM-SHA-512", "leadpipe", "s3cret", True)
    consumer_settings = ConsumerSettings()
    runner = ConsumerRunner(settings=consumer_settings, service="scoring", input_topics=["leads.enriched"],
                            applier=BatchApplier(service="scoring", handlers={}, unit_of_work=lambda: None),
                            producer=Producer(consumer_settings, client_id="scoring"))
    clients = {
        "producer": Producer(consumer_settings, client_id="scoring")._client,
        "consumer runner": runner._make_consumer(),
        "topic admin": admin_client(TopicSettings()),
        "topic scan (replay, export)": TopicScan(KafkaSettings(), "leads.lifecycle")._consumer,
        "redrive": dead_letter_reader(KafkaSettings()),
    }
    try:
        assert {name: connection(client) for name, client in clients.items()} == dict.fromkeys(clients, expected)
    finally:
        for client in clients.values():
            await (client.close() if hasattr(client, "close") else client.stop())


def test_the_password_never_shows_in_the_settings():
    settings = KafkaSettings(**{"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u",
                                "kafka_sasl_password": "s3cret"})
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_sasl_without_credentials_is_refused_naming_the_variables(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        KafkaSettings()


@pytest.mark.parametrize(("servers", "says"), [
    ("127.0.0.1:9O92", "has port '9O92', not a number in 1-65535"),
    ("kafka.example.com:70000", "has port '70000'"),
    ("kafka.example.com:9093,", "'' is an empty entry"),
    ("kafka://kafka.example.com:9093", "no scheme"),
    (":9093", "names no host"),
    ("[::1:9093", "is not [IPv6 address]:port"),
])
def test_a_bootstrap_server_that_is_no_host_and_port_is_refused_naming_the_variable(servers, says):
    with pytest.raises(ValidationError) as refused:
        KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=servers)
    error = refused.value.errors()[0]
    assert error["loc"] == ("KAFKA_BOOTSTRAP_SERVERS",) and says in error["msg"]


def test_every_form_of_bootstrap_server_aiokafka_takes_is_taken():
    servers = "kafka-1.example.com:9093, kafka-2.example.com,10.0.0.3:9092,[::1]:9092,::1"
    assert KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=servers).kafka_bootstrap_servers == servers


@pytest.fixture
def pems(tmp_path) -> dict[str, Path]:
    """A CA certificate (also the client's), its key, its key encrypted, and the key of another."""
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leadpipe test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    files = {
        "cert": cert.public_bytes(serialization.Encoding.PEM),
        "key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()),
        "encrypted key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(b"s3cret")),
        "other key": other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()),
    }
    for what, data in files.items():
        (tmp_path / f"{what.replace(' ', '-')}.pem").write_bytes(data)
    return {what: tmp_path / f"{what.replace(' ', '-')}.pem" for what in files}


def tls(**files: Path) -> KafkaSettings:
    return KafkaSettings(KAFKA_SECURITY_PROTOCOL="SSL", **{f"KAFKA_SSL_{k.upper()}": str(v) for k, v in files.items()})


def test_the_ca_and_client_certificate_of_the_settings_reach_the_clients(pems):
    options = client_options(tls(cafile=pems["cert"], certfile=pems["cert"], keyfile=pems["key"]))
    assert [c["subject"] for c in options["ssl_context"].get_ca_certs()] == [((("commonName", "leadpipe test CA"),),)]


@pytest.mark.parametrize(("files", "says"), [
    ({"cafile": "missing"}, "KAFKA_SSL_CAFILE: cannot read {missing}: No such file or directory"),
    ({"cafile": "directory"}, "KAFKA_SSL_CAFILE: cannot read {directory}: Is a directory"),
    ({"cafile": "key"}, "KAFKA_SSL_CAFILE: {key} holds no CA certificate in PEM"),
    ({"certfile": "cert", "keyfile": "missing"}, "KAFKA_SSL_KEYFILE: cannot read {missing}"),
    ({"certfile": "missing", "keyfile": "key"}, "KAFKA_SSL_CERTFILE: cannot read {missing}"),
    ({"certfile": "cert", "keyfile": "other key"}, "are not a certificate in PEM and its unencrypted key "
                                                   "(KEY_VALUES_MISMATCH)"),
    ({"certfile": "cert", "keyfile": "encrypted key"}, "are not a certificate in PEM and its unencrypted key"),
])
def test_a_tls_file_it_cannot_use_is_refused_naming_its_variable(pems, tmp_path, files, says):
    paths = {**pems, "missing": tmp_path / "missing.pem", "directory": tmp_path}
    with pytest.raises(ValidationError, match=re.escape(says.format(**{k.replace(" ", "_"): v for k, v in
                                                                        paths.items()}))):
        tls(**{variable: paths[what] for variable, what in files.items()})


@pytest.mark.parametrize(("command", "env", "names"), [
    (["-m", "leadpipe_common.redrive"], {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nowhere/ca.pem"},
     "KAFKA_SSL_CAFILE: cannot read /nowhere/ca.pem"),
    (["-m", "reporting", "export", "{tmp}/out.jsonl"],
     {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
      "KAFKA_SSL_CAFILE": "/nowhere/ca.pem"}, "KAFKA_SSL_CAFILE: cannot read /nowhere/ca.pem"),
    (["-c", "from leadpipe_common.admin import run; run()"], {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9O92"},
     "invalid setting KAFKA_BOOTSTRAP_SERVERS"),
    # Without the check capture served, logging "cannot reach the broker yet" for ever: on a port of its own.
    (["-m", "capture", "serve"], {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9O92", "CAPTURE_PORT": str(free_port())},
     "invalid setting KAFKA_BOOTSTRAP_SERVERS"),
])
def test_a_command_given_kafka_settings_it_cannot_use_stops_at_once_naming_the_variable(tmp_path, command, env,
                                                                                        names):
    result = subprocess.run([sys.executable, *(part.format(tmp=tmp_path) for part in command)], capture_output=True,
                            text=True, timeout=30, env={**os.environ, **env, "COLUMNS": "500"})
    assert result.returncode == 2 and names in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_tls_files_under_a_protocol_without_tls_are_refused_not_ignored():
    """PLAINTEXT read no file: whoever set KAFKA_SSL_CAFILE meant TLS and talked to the broker in clear."""
    from pydantic import ValidationError

    from leadpipe_common.settings import ServiceSettings

    with pytest.raises(ValidationError, match="KAFKA_SSL_CAFILE set, but KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no "
                                              "TLS: set it to SSL or SASL_SSL"):
        ServiceSettings(DATABASE_URL="postgresql://u:p@127.0.0.1:1/x", KAFKA_SSL_CAFILE="/nowhere/ca.pem")


def test_an_empty_tls_file_setting_is_unset_not_the_current_directory():
    """compose's ${KAFKA_SSL_CAFILE:-} gives an empty value, which was Path("."): set, under PLAINTEXT refused."""
    from leadpipe_common.settings import ServiceSettings

    settings = ServiceSettings(DATABASE_URL="postgresql://u:p@127.0.0.1:1/x", KAFKA_SSL_CAFILE="",
                               KAFKA_SSL_CERTFILE=" ", KAFKA_SSL_KEYFILE="")
    assert (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile) == (None, None, None)
