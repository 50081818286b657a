"""Settings every service shares, read from the environment.

Guarantees: a setting is read once, when a service's composition root builds
its settings object (never at import time); a bad value fails the start with
the variable's name, not a stack trace deep inside a client. Service settings
subclass :class:`ServiceSettings` and add their own, prefixed with the
service's name (``CAPTURE_PORT``); the connection settings are unprefixed so
one ``DATABASE_URL`` and one ``KAFKA_BOOTSTRAP_SERVERS`` serve a whole stack.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from leadpipe_common import topics
from leadpipe_common.logging import level_named
from leadpipe_common.origins import web_origin
from leadpipe_common.throttle import parse_networks, parse_rate
from leadpipe_common.topology import parse_retention

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/leadpipe"
#: Where `make run` keeps its embedded Postgres's password, in its data directory (``LEADPIPE_DATA_DIR``).
POSTGRES_PASSWORD_FILE = "postgres.password"
#: How long a new database connection may take to be set up (TCP, TLS, sign-in) by default: asyncpg's 60 s held a
#: command line silent for a minute on a Postgres that accepts connections and never answers (wedged, or something
#: else on its port), and a service's request as long before its 503.
DEFAULT_CONNECT_TIMEOUT_S = 10.0
#: How long a migration waits for a lock on a table it changes by default. An ALTER TABLE queued behind a long
#: transaction on its table (an admin's open psql, a report) holds every later reader and writer of the table behind
#: itself: the service's requests would wait, then fail, for as long as that transaction lasted. Failing instead, it
#: changed nothing and can be run again once the table is free.
DEFAULT_MIGRATION_LOCK_TIMEOUT_S = 10.0


def _connect_timeout() -> Any:
    # One variable for the services and for make run, which migrates in its own process (StackSettings).
    return Field(DEFAULT_CONNECT_TIMEOUT_S, gt=0, validation_alias="DATABASE_CONNECT_TIMEOUT_S",
                 description="seconds a new database connection may take to be set up (TCP, TLS, sign-in) before it "
                             "fails; raise it for a database that wakes slowly (Aurora Serverless resuming, a cloud "
                             "SQL proxy's cold start)")


def _migration_lock_timeout() -> Any:
    # Like the connect timeout, one variable for every service's migrate and for make run's.
    # At most a day: far beyond any wait worth queueing every request behind, and within what Postgres's
    # lock_timeout holds (some 24 days), which would refuse more only once connected.
    return Field(DEFAULT_MIGRATION_LOCK_TIMEOUT_S, gt=0, le=86_400,
                 validation_alias="DATABASE_MIGRATION_LOCK_TIMEOUT_S",
                 description="seconds (above 0, at most 86400) a migration waits for a table it changes while "
                             "another transaction holds it (an open `psql` session, a long report); then it stops "
                             "having changed nothing, exit code 1, to be run again once the table is free. Queued "
                             "longer, it would hold every request on that table behind it")


def _beside_make_run(given: Any, variable: str) -> StackSettings | None:
    """make run's settings, for a default of ``variable`` (unset in ``given``, a settings source's values) that
    follows them, as a command run beside make run must; None when it is set, or the LEADPIPE_* variables are not
    make run's (another program's on a server: the default stands)."""
    if not isinstance(given, dict) or variable in given:
        return None
    try:
        return StackSettings()
    except ValueError:
        return None


class KafkaSettings(BaseSettings):
    """How every Kafka client leadpipe builds reaches the cluster (``kafka.client_options``)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field(
        DEFAULT_BOOTSTRAP, validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="your Kafka or Redpanda; unset, `make run` starts the embedded broker here (on "
                    "`LEADPIPE_BROKER_PORT`, when set)",
    )

    @model_validator(mode="before")
    @classmethod
    def _embedded_broker_port(cls, given: Any) -> Any:
        # Unset, the cluster is make run's embedded broker, on the port make run was given: one moved off 9092
        # (LEADPIPE_BROKER_PORT) because a broker of the user's holds it. A command run beside it (make redrive,
        # make replay) talked to that other broker, as the Postgres port's are followed (ServiceSettings).
        if (stack := _beside_make_run(given, "KAFKA_BOOTSTRAP_SERVERS")) is None:
            return given
        host, _, default_port = DEFAULT_BOOTSTRAP.rpartition(":")
        port = str(stack.broker_port)
        return given if port == default_port else {**given, "KAFKA_BOOTSTRAP_SERVERS": f"{host}:{port}"}
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL",
        description="`PLAINTEXT`, `SSL` (TLS), `SASL_PLAINTEXT` or `SASL_SSL` (SASL over TLS)")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", validation_alias="KAFKA_SASL_MECHANISM", description="with SASL: `PLAIN`, `SCRAM-SHA-256` or "
                                                                      "`SCRAM-SHA-512`")
    kafka_sasl_username: str | None = Field(None, validation_alias="KAFKA_SASL_USERNAME",
                                            description="with SASL: the user")
    kafka_sasl_password: SecretStr | None = Field(None, validation_alias="KAFKA_SASL_PASSWORD",
                                                  description="with SASL: the password (never logged)")
    kafka_ssl_cafile: Path | None = Field(None, validation_alias="KAFKA_SSL_CAFILE",
                                          description="with TLS: the CA bundle to trust; unset: the system's")
    kafka_ssl_certfile: Path | None = Field(None, validation_alias="KAFKA_SSL_CERTFILE",
                                            description="with TLS: a client certificate (mutual TLS)")
    kafka_ssl_keyfile: Path | None = Field(None, validation_alias="KAFKA_SSL_KEYFILE",
                                           description="with TLS: the client certificate's key (unencrypted)")

    # The embedded broker cannot answer InitProducerId; a real cluster can.
    kafka_enable_idempotence: bool = Field(
        False, validation_alias="KAFKA_ENABLE_IDEMPOTENCE",
        description="idempotent producers; turn on against a real cluster (the embedded broker cannot grant "
                    "producer ids)",
    )

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        # An empty value (compose's ${X:-}, a blank ConfigMap key) is unset, not the current directory (Path("")).
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _complete(self) -> KafkaSettings:
        if self.kafka_security_protocol.startswith("SASL") and not (self.kafka_sasl_username and
                                                                    self.kafka_sasl_password):
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME "
                             "and KAFKA_SASL_PASSWORD")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together")
        given = [name for name, path in (("KAFKA_SSL_CAFILE", self.kafka_ssl_cafile), ("KAFKA_SSL_CERTFILE",
                 self.kafka_ssl_certfile), ("KAFKA_SSL_KEYFILE", self.kafka_ssl_keyfile)) if path is not None]
        if given and self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            # Read by no client under it: whoever set them meant TLS, and would have talked to the broker in clear.
            raise ValueError(f"{', '.join(given)} set, but KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} "
                             "uses no TLS: set it to SSL or SASL_SSL")
        self.kafka_ssl_context()  # a file it cannot use stops the start, not every client's connect
        return self

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_ports(cls, servers: str) -> str:
        # aiokafka parses them only when a client connects: a port that is no number was a ValueError
        # traceback there, or a broker "not reachable yet" for ever in a loop that waits for one.
        for entry in servers.split(","):
            problem = _host_port_problem(entry.strip())
            if problem:
                raise ValueError(f"{entry.strip()!r} {problem} (host:port, comma-separated)")
        return servers

    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every Kafka client (None without TLS); a file it cannot use is a ValueError naming
        its variable."""
        if self.kafka_security_protocol not in ("SSL", "SASL_SSL"):
            return None
        files = {"KAFKA_SSL_CAFILE": self.kafka_ssl_cafile, "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
                 "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile}
        for variable, path in files.items():
            if path is not None:
                try:
                    path.open("rb").close()
                except OSError as exc:
                    raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from None
        cafile, certfile, keyfile = (str(path) if path else None for path in files.values())
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        except ssl.SSLError as exc:
            raise ValueError(f"KAFKA_SSL_CAFILE: {cafile} holds no CA certificate in PEM ({exc.reason})") from None
        if certfile:
            try:
                # An empty password, never None: with None, OpenSSL asks for the key's password on the terminal.
                context.load_cert_chain(certfile, keyfile, password="")
            except ssl.SSLError as exc:
                raise ValueError(f"KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE: {certfile} and {keyfile} are not a "
                                 "certificate in PEM and its unencrypted key"
                                 + (f" ({exc.reason})" if exc.reason else "")) from None
        return context


def _host_port_problem(entry: str) -> str | None:
    """Why ``entry`` is no ``host:port`` aiokafka can connect to (``host`` alone: port 9092), or None."""
    if not entry:
        return "is an empty entry"
    if "/" in entry or any(c.isspace() for c in entry):
        return "is not host:port (no scheme, path or space)"
    if entry.startswith("["):  # an IPv6 address, its port after the bracket
        address, bracket, port = entry[1:].partition("]")
        if not bracket or not address or (port and not port.startswith(":")):
            return "is not [IPv6 address]:port"
        port = port[1:] if port else "9092"
    elif entry.count(":") > 1:  # an IPv6 address without brackets: no port
        try:
            socket.inet_pton(socket.AF_INET6, entry)
        except OSError:
            return "is not host:port (an IPv6 address with a port is written [address]:port)"
        return None
    else:
        host, _, port = entry.rpartition(":") if ":" in entry else (entry, ":", "9092")
        if not host:
            return "names no host"
    if not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return f"has port {port!r}, not a number in 1-65535"
    return None


class ServiceSettings(KafkaSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str = Field(
        DEFAULT_DATABASE_URL, validation_alias="DATABASE_URL",
        description="any `postgresql://` URL, each service in its own schema; TLS by `?sslmode=` (see below); "
                    "unset, `make run` starts an embedded Postgres here, and a command takes that one's password "
                    f"from `{POSTGRES_PASSWORD_FILE}` in `LEADPIPE_DATA_DIR`",
    )
    database_connect_timeout_s: float = _connect_timeout()
    database_migration_lock_timeout_s: float = _migration_lock_timeout()
    db_pool_size: int = Field(10, ge=1, validation_alias="DB_POOL_SIZE",
                              description="database connections per process (and as many again in overflow)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", validation_alias="LOG_LEVEL", description="`DEBUG`, `INFO`, `WARNING`, `ERROR`, `CRITICAL`")

    @field_validator("log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return level_named(value)
    log_json: bool | None = Field(None, validation_alias="LOG_JSON",
                                  description="JSON log lines; unset: JSON when stderr is not a terminal")

    host: str = Field("127.0.0.1", description="bind address (`0.0.0.0` in containers)")
    port: int = Field(8000, description="HTTP port; replica *i* under `make run` listens on port + 100·*i*")
    # Consumers scale by replicas (processes in the group) instead, so this matters for capture.
    workers: int = Field(1, ge=1, description="uvicorn worker processes behind the port")
    # uvicorn kept a request's head, however long, for as long as its client took to send it (connections.py).
    max_header_bytes: int = Field(32 * 1024, ge=1024, description="the most a request's head (its request line "
                                                                  "and headers) may hold; a longer one gets `400` "
                                                                  "and its connection closed")
    header_deadline_s: float = Field(10.0, gt=0, description="seconds a request's head may take to arrive in full, "
                                                             "from the connection's opening or, on a kept-alive "
                                                             "one, from the first bytes after the previous answer; "
                                                             "past it the connection is closed")
    max_body_bytes: int = Field(64 * 1024, ge=1024, description="larger request bodies get `413` (declared or "
                                                                "chunked)")
    # Postgres gone silent (a network partition, a frozen host) ends no statement, and its statement_timeout cannot
    # answer for it: a request waited until the operating system gave up on its connection, minutes later.
    db_request_deadline_s: float = Field(
        30.0, ge=0, description="how long Postgres may take to do the database work of one HTTP request (an API "
                                "key's lookup, then what the route reads and writes) before the request is "
                                "answered `503` with `Retry-After` and the connection closed; Postgres gone silent "
                                "(a network partition, a frozen host) otherwise held the request until the "
                                "operating system gave up on the connection, minutes later. Keep it above what a "
                                "route's honest work takes; 0: for ever")
    # A route reads a body after its key and rate checks (capture's public posts included): trickled in, a byte
    # every few seconds, each one held its connection and up to MAX_BODY_BYTES of memory without end.
    body_deadline_s: float = Field(15.0, gt=0, description="seconds a request's body may take to arrive in full, "
                                                           "counted from the request's start (its headers "
                                                           "received); past it: `408` and the connection closed, "
                                                           "nothing of the request stored")
    # uvicorn served every connection it accepted, for as long as its client liked: thousands of slow or idle ones,
    # from many addresses, could take a process's memory or file descriptors.
    max_connections: int = Field(1000, ge=1, description="open connections one process serves at once, idle "
                                                         "kept-alive ones included: one more is closed as soon as "
                                                         "it is accepted, and a request that comes while as many "
                                                         "are in progress is answered `503`; as many again may "
                                                         "wait to be accepted (the listen backlog)")
    # Counted per process only, a flood of idle connections from one address refused everyone else while it lasted.
    max_connections_per_address: int = Field(100, ge=1, description="open connections one client address (an IPv6 "
                                                                    "one by its /64) may hold of a process at once; "
                                                                    "one more is closed as soon as it is accepted "
                                                                    "(a warning says so, at most once a minute). Not "
                                                                    "counted for the proxies "
                                                                    "named in `<SERVICE>_TRUSTED_PROXIES`, whose "
                                                                    "connections carry many clients (limit those per "
                                                                    "client at the proxy, e.g. nginx's `limit_conn`)")
    keep_alive_s: int = Field(5, ge=1, description="seconds an idle kept-alive connection stays open; behind a load "
                                                   "balancer that reuses its connections to the service, set it "
                                                   "above the balancer's idle timeout (AWS ALB: 60 s), or it may "
                                                   "send a request on one just closed (a `502`)")
    # uvicorn serves plain HTTP and believes no X-Forwarded-Proto (cli.serve): behind a proxy that terminates TLS
    # every request arrives as http, so where browsers really are must be said. Several when browsers reach it
    # under more than one name (two domains, or both during a move from one to the other).
    public_origin: str | None = Field(
        None, description="where browsers reach the service when a proxy in front of it terminates TLS, as "
                          "`scheme://host[:port]` (`https://reports.example.com`), or several, comma-separated, "
                          "when it has more than one name (the first is the canonical one): a dashboard sign-in "
                          "or sign-out must come from one of them, and the session cookie is `Secure` when the "
                          "one a sign-in comes from (the first, if it names none) is `https` (and whenever the "
                          "browser's `Origin` is); unset: the address each request came to (`make run` serves "
                          "`http://127.0.0.1`)")
    # Behind a proxy every client has the proxy's address: one client's wrong keys would count against all of them.
    trusted_proxies: str = Field("", description="comma-separated addresses or networks of your proxies; "
                                                 "`X-Forwarded-For` is believed only from them (rate limits count "
                                                 "by client address: behind a proxy not named here, every client "
                                                 "is the proxy, and a process serves it at most "
                                                 "`<SERVICE>_MAX_CONNECTIONS_PER_ADDRESS` connections)")
    bad_key_rate_limit: str = Field(
        "30/minute", description="wrong API keys (unknown, revoked, not a key) one client address may send, on any "
                                 "route that takes a key and on the dashboard sign-in; past it: `429` with "
                                 "`Retry-After` for a wrong key, and before it is compared for text not shaped as "
                                 "a key (a key the process found valid still gets through; one of a key's shape it "
                                 "has not is looked up, once a second at most for its address and 5 a second "
                                 "for the whole process)")
    bootstrap_key: SecretStr | None = Field(
        None, validation_alias="LEADPIPE_BOOTSTRAP_KEY",
        description="a secret of your choice (24 characters or more) that is an admin API key on every service, "
                    "with no row in the database: first start, automation, tests")
    session_secret: SecretStr | None = Field(
        None, validation_alias="LEADPIPE_SESSION_SECRET",
        description="signs the dashboard's login sessions (32 characters or more); give every replica the same "
                    "one (unset: random per process, so a restart asks for a new login). With "
                    "`DELIVERY_SECRETS_KEY` unset it also seals delivery's webhook secrets: changed or unset, "
                    "delivery consumes nothing until it, or the key it gave, is back (pin that key in "
                    "`DELIVERY_SECRETS_KEY` before a change: see there)")

    @field_validator("port")
    @classmethod
    def _a_port(cls, port: int) -> int:
        # Not Field(ge=, le=): each service declares its port again, with its own default, and a subclass's
        # declaration drops the base's constraints; a validator holds for every subclass. 0 (any free port) is
        # what commands that serve nothing are given (the stack tests' rescore, redrive, export).
        if not 0 <= port < 65536:
            raise ValueError("must be a port number, 1-65535 (0: any free one)")
        return port

    @field_validator("public_origin")
    @classmethod
    def _origins(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(not origin.strip() for origin in value.split(",")):
            raise ValueError(f"{value!r} has an empty origin (a comma doubled, or one at either end)")
        return ",".join(web_origin(origin) for origin in value.split(","))

    @property
    def public_origins(self) -> tuple[str, ...]:
        """``<SERVICE>_PUBLIC_ORIGIN``'s origins, the canonical one first; none when it is unset."""
        return tuple(self.public_origin.split(",")) if self.public_origin else ()

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: str, info: Any) -> str:
        parse_networks(v, cls.variable(info.field_name))
        return v

    @field_validator("bad_key_rate_limit")
    @classmethod
    def _a_rate(cls, v: str, info: Any) -> str:
        parse_rate(v, cls.variable(info.field_name))
        return v

    @classmethod
    def variable(cls, field: str) -> str:
        """The environment variable that sets ``field`` (``CAPTURE_BAD_KEY_RATE_LIMIT``), for messages."""
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()

    @field_validator("bootstrap_key")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 24:
            raise ValueError("must be at least 24 characters: it opens everything")
        return v

    @field_validator("session_secret")
    @classmethod
    def _hard_to_guess(cls, v: SecretStr | None) -> SecretStr | None:
        return hard_to_guess(v, "it signs sessions and form tokens and seals webhook secrets")

    @field_validator("database_url")
    @classmethod
    def _use_asyncpg(cls, url: str) -> str:
        return asyncpg_url(url)

    def request_deadline_s(self) -> float | None:
        """``<SERVICE>_DB_REQUEST_DEADLINE_S`` as ``db.answered_within`` takes it: None for none."""
        return self.db_request_deadline_s or None

    @model_validator(mode="before")
    @classmethod
    def _embedded_postgres_password(cls, given: Any) -> Any:
        # Unset, DATABASE_URL is make run's embedded Postgres, which takes no connection without the password
        # make run keeps: a command run beside it (leadpipe-keys, make replay) reads it where make run's
        # services are given it from.
        if (stack := _beside_make_run(given, "DATABASE_URL")) is None:
            return given
        try:
            password = (stack.data_dir / POSTGRES_PASSWORD_FILE).read_text().strip()
        except OSError:  # no make run here, or another user's
            return given
        # On make run's port: one moved off 5432 (LEADPIPE_POSTGRES_PORT) because a Postgres of the user's holds it.
        url = (make_url(DEFAULT_DATABASE_URL).set(port=stack.postgres_port, password=password)
               .render_as_string(hide_password=False))
        return {**given, "DATABASE_URL": url}

    def db_server_settings(self) -> dict[str, str]:
        """Postgres settings every connection of the serving process's pool starts with (none by default); the
        engines of admin commands and migrations do without them."""
        return {}

    def db_settings_for(self, server_major: int) -> dict[str, str]:
        """Postgres settings each new connection of the serving process's pool is given once its server's major
        version is known (``db.per_server_settings``): those a server of another version would refuse at start-up
        (none by default)."""
        return {}


#: libpq's ``sslmode`` values, which asyncpg takes as its ``ssl`` argument.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
#: Certificate files libpq takes in the URL; asyncpg reads them from libpq's variables instead.
_SSL_FILES = {"sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslcrl": "PGSSLCRL"}


def _number(text: str, *, whole: bool, least: float) -> bool:
    try:
        return (int(text) if whole else float(text)) >= least
    except ValueError:
        return False


#: Parameters SQLAlchemy's asyncpg dialect or asyncpg itself take from the URL as they are (text), each with its
#: check: prepared_statement_cache_size (0 behind PgBouncer in transaction mode), command_timeout (seconds a
#: statement may take), target_session_attrs (which server of several to use).
_PASSED_ON = {
    "prepared_statement_cache_size": lambda v: _number(v, whole=True, least=0),
    "command_timeout": lambda v: _number(v, whole=False, least=1e-9),
    "target_session_attrs": lambda v: v in ("any", "primary", "standby", "prefer-standby", "read-write", "read-only"),
}
_PASSED_ON_AS = {"prepared_statement_cache_size": "a whole number of 0 or more",
                 "command_timeout": "a number of seconds above 0",
                 "target_session_attrs": "one of any, primary, standby, prefer-standby, read-write, read-only"}


def hard_to_guess(secret: SecretStr | None, what_it_does: str) -> SecretStr | None:
    """``secret`` if it is unset or 32 characters or more, or a ValueError saying how to make one: a shorter one
    that signs what a client holds (a session cookie, a form token) is guessed offline from one of them."""
    if secret is not None and len(secret.get_secret_value()) < 32:
        raise ValueError("must be at least 32 characters (python3 -c 'import secrets; print(secrets."
                         f"token_urlsafe(32))'): {what_it_does}")
    return secret


def asyncpg_url(text: str) -> str:
    """``DATABASE_URL`` as SQLAlchemy's asyncpg dialect takes it, or a ValueError naming the variable (never
    echoing its value: it holds the password).

    The dialect hands every query parameter to ``asyncpg.connect`` as an argument: libpq's ``sslmode``, in the
    URL most providers give, failed every connection with a TypeError; it becomes asyncpg's ``ssl``, which
    takes the same modes. Several ``host`` parameters name servers to try in turn, and ``_PASSED_ON`` lists the
    others the dialect or asyncpg take as text; any other parameter (libpq's own) would fail every connection,
    so it is refused here, at start.
    """
    # Users paste the URL their Postgres provider gives them; the async
    # engine needs the asyncpg dialect spelled out.
    for prefix in ("postgresql://", "postgres://"):
        if text.startswith(prefix):
            text = "postgresql+asyncpg://" + text[len(prefix) :]
    if not text.startswith("postgresql+asyncpg://"):
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
    try:
        url = make_url(text)
        port = url.port
    except (ArgumentError, ValueError):
        raise ValueError("DATABASE_URL is not a URL of the form postgresql://user:password@host:port/database "
                         "(a port is a number; a password with @, : or / in it is written %40, %3A, %2F)") from None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"DATABASE_URL: port {port} is not a port number (1-65535)")
    if url.host and "@" in url.host:
        raise ValueError("DATABASE_URL: the host holds an @; an @ in the user or password is written %40")
    query = dict(url.query)
    if "host" in query:
        # The host parameters alone: the dialect would read the others first, with its own errors for them.
        _servers_checked(url.set(query={"host": query["host"]}))
    for name, value in query.items():
        if name == "host":  # ?host=a:5432&host=b:5432: several servers, tried in turn (failover)
            continue
        if isinstance(value, tuple):
            raise ValueError(f"DATABASE_URL: {name} is given {len(value)} times")
        if name in _SSL_FILES:
            raise ValueError(f"DATABASE_URL: {name} is not taken in the URL; set {_SSL_FILES[name]} to the file "
                             "instead")
        if name in _PASSED_ON:
            if not _PASSED_ON[name](value):
                raise ValueError(f"DATABASE_URL: {name}={value!r} is not {_PASSED_ON_AS[name]}")
            continue
        if name not in ("sslmode", "ssl"):
            raise ValueError(f"DATABASE_URL: unknown parameter {name!r} (taken: sslmode, host, "
                             f"{', '.join(_PASSED_ON)})")
        if value not in SSL_MODES:
            raise ValueError(f"DATABASE_URL: {name}={value!r} is not one of {', '.join(SSL_MODES)}")
    if "sslmode" not in query:
        return text
    if "ssl" in query and query["ssl"] != query["sslmode"]:
        raise ValueError("DATABASE_URL: sslmode and ssl say different things; give sslmode alone")
    return url.difference_update_query(["sslmode"]).update_query_dict({"ssl": query["sslmode"]}).render_as_string(
        hide_password=False)


def _servers_checked(url: URL) -> None:
    """The servers ``host`` parameters name (``?host=a:5432&host=b:5432``), read as the asyncpg dialect reads
    them, or a ValueError saying what is wrong: a port that is no number, or out of range, failed every
    connection with SQLAlchemy's or asyncpg's traceback."""
    from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg

    try:
        _, args = PGDialect_asyncpg().create_connect_args(url)
    except (ArgumentError, ValueError, TypeError) as exc:  # its text names ports and hosts, never the password
        raise ValueError(f"DATABASE_URL: its host parameters name no servers it can connect to ({exc}): give "
                         "each as host=a:5432&host=b:5432") from None
    ports = args.get("port")
    for port in ports if isinstance(ports, list) else [ports]:
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"DATABASE_URL: port {port} in its host parameters is not a port number (1-65535)")


class ConsumerSettings(ServiceSettings):
    """A service that reads a topic through the consumer runner."""

    batch_max_records: int = Field(500, ge=1, description="most records applied in one batch (one transaction)")
    # A poll returns as soon as a fetch brings records; this only bounds an empty one, and each empty one is a
    # wake-up of an idle process (held stack, back to back: 100 -> 1000 ms took the idle stack from 0.051/0.057
    # to 0.036/0.034 cores). A stop cuts a waiting poll short.
    batch_timeout_ms: int = Field(1000, ge=1, description="how long one poll waits while no records come (records "
                                                          "end it at once, and so does a stop)")
    # Kafka answers a waiting fetch as soon as a record arrives, so there a long wait costs no latency. The
    # embedded Tansu does not: it answers every fetch after about half its wait, so there the wait is each
    # stage's latency, traded against the broker's ~1-2 ms of CPU per fetch: consumer.FetchPacer follows
    # the load between FETCH_MIN_WAIT_MS and FETCH_MAX_WAIT_MS. make bench, whole stack, before pacing:
    # 50 ms -> 500 ms took the idle stack from 0.32 to 0.15 cores and the broker's CPU per lead at 100
    # leads/s from 5.1 to 3.4 ms.
    fetch_max_wait_ms: int = Field(500, ge=1, description="how long the broker may hold a fetch open while no "
                                                         "record arrives (Kafka ends it when one does; the "
                                                         "embedded Tansu after about half of it); once "
                                                         "records stop, `FETCH_IDLE_WAIT_MS`")
    fetch_idle_wait_ms: int = Field(1000, ge=1, description="how long a fetch may wait once records have "
                                                           "stopped coming (under one a second); a paced "
                                                           "stage only, never below `FETCH_MAX_WAIT_MS`")
    fetch_min_wait_ms: int = Field(20, ge=1, description="the shortest wait a paced fetch is given, however "
                                                         "fast records arrive")
    # The per-batch cost of each stage against each hop's wait. 25 -> 18 (held stack, alternating, twice, after
    # capture's fuller write rounds paid for it): 300 leads/s request to lead.routed p50 193/207 -> 158/155 ms,
    # 100/s context switches 12.9 -> 14.1 a lead (the stack's level before those rounds). 15: 144/144 ms, 15.5.
    fetch_batch_target: int = Field(18, ge=0, description="the batch size the fetch wait is paced to while "
                                                          "records keep coming (on the embedded broker a "
                                                          "batch holds about half of it), between "
                                                          "`FETCH_MIN_WAIT_MS` and `FETCH_MAX_WAIT_MS` "
                                                          "(`FETCH_IDLE_WAIT_MS` once they stop); 0 always "
                                                          "waits `FETCH_MAX_WAIT_MS`")
    fetch_min_bytes: int = Field(1, ge=1, description="how much data the broker gathers before it answers a "
                                                      "fetch (or `FETCH_MAX_WAIT_MS` passes)")
    # A commit is two broker round trips (the log-end check and the commit), paid by every consumer on its own
    # schedule; what a crash leaves uncommitted is read again and absorbed by the inbox. Kafka's own auto-commit
    # default is 5 s as well.
    commit_interval_ms: int = Field(5000, ge=0, description="how often applied offsets are committed (and at "
                                                         "stop, and a rebalance's revoked partitions'); what a "
                                                         "crash leaves uncommitted (or a rebalance whose commit "
                                                         "fails) is read again; 0: after every batch")
    session_timeout_ms: int = Field(10_000, ge=3000, description="how long the group waits for a silent member "
                                                                 "before giving its partitions to the others: the "
                                                                 "recovery time after a crash")
    heartbeat_interval_ms: int = Field(3_000, ge=500, description="how often a member tells the group it is alive "
                                                                 "(shorter than `SESSION_TIMEOUT_MS`)")

    @model_validator(mode="after")
    def _heartbeat_within_session(self) -> ConsumerSettings:
        # Kafka's own clients refuse it: a member that says it is alive less often than the group waits for it is
        # taken for dead between two heartbeats, its partitions moved again and again.
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(f"{self.variable('heartbeat_interval_ms')} ({self.heartbeat_interval_ms}) must be "
                             f"shorter than {self.variable('session_timeout_ms')} ({self.session_timeout_ms}); a third "
                             "of it is usual")
        return self
    retry_backoff_max_s: float = Field(30.0, gt=0, description="longest wait between retries of a failing batch")
    outbox_idle_s: float = Field(1.0, gt=0, description="how long a service's outbox relay idles, for a service "
                                                        "with one (a write wakes it at once)")
    outbox_batch_max: int = Field(500, ge=1, description="most outbox rows the relay publishes in one round")
    outbox_linger_ms: int = Field(0, ge=0, description="how long a woken relay waits at most for more writes to "
                                                      "publish with the first")
    outbox_round_target: int = Field(0, ge=0, description="messages a relay round should carry: a woken relay "
                                                          "waits about as long as they take to arrive at the "
                                                          "recent rate, at most `OUTBOX_LINGER_MS`, and not at "
                                                          "all while under one is expected in it; 0 always "
                                                          "waits `OUTBOX_LINGER_MS`")


class TopicSettings(KafkaSettings):
    """How ``make run`` and ``leadpipe-create-topics`` create the topics (existing ones are left alone)."""

    model_config = SettingsConfigDict(env_prefix="TOPIC_", extra="ignore", frozen=True)

    topic_partitions: int = Field(topics.DEFAULT_PARTITIONS, ge=1, validation_alias="TOPIC_PARTITIONS",
                                  description="partitions of each topic created: the ceiling on a stage's processes (unset, "
                                              "`make run`'s embedded broker makes 1, or the most `<SERVICE>_REPLICAS`)")
    topic_replication: int = Field(1, ge=1, validation_alias="TOPIC_REPLICATION",
                                   description="replicas of each topic created (3 on a production cluster)")
    topic_retention: str = Field(
        "", validation_alias="TOPIC_RETENTION",
        description="`topic=duration` pairs over the built-in retention (lifecycle, quarantined and dead letters "
                    "forever, the rest 30 days), e.g. `leads.captured=7d,leads.routed=forever`")

    @field_validator("topic_retention")
    @classmethod
    def _retention(cls, v: str) -> str:
        parse_retention(v)  # fails the start naming the entry that is wrong
        return v

    def retention_overrides(self) -> dict[str, int]:
        return parse_retention(self.topic_retention)


class StackSettings(BaseSettings):
    """Where ``make run`` puts the embedded broker and Postgres it starts (when it starts them), and how long it
    waits for a Postgres to answer, and for a table another transaction holds, when it migrates."""

    model_config = SettingsConfigDict(env_prefix="LEADPIPE_", extra="ignore", frozen=True)

    data_dir: Path = Field(Path(".data"), description="the embedded Postgres's data (its log in `postgres/`), the "
                                                     "broker's log (`logs/`), the admin key and the Postgres "
                                                     "password of `make run`; the services log to its terminal. "
                                                     "One `make run` at a time uses it")
    broker_port: int = Field(9092, ge=1, le=65535, description="port of the embedded broker")
    postgres_port: int = Field(5432, ge=1, le=65535, description="port of the embedded Postgres")
    database_connect_timeout_s: float = _connect_timeout()  # for its migrations, on the embedded Postgres or yours
    database_migration_lock_timeout_s: float = _migration_lock_timeout()
