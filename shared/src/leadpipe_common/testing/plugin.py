"""pytest fixtures: ``stack`` (broker, Postgres, every service as a real process) and helpers."""

from __future__ import annotations

import base64
import logging
import os
import importlib.resources
import secrets
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
import yaml

from leadpipe_common.files import parse_yaml
from leadpipe_common.logging import QUIETED
from leadpipe_common.local.infra import die_with_parent, free_port
from leadpipe_common.testing.captcha import SECRET as CAPTCHA_SECRET
from leadpipe_common.testing.captcha import VERIFIER
from leadpipe_common.local.stack import REPLICA_PORT_STEP, SERVICES, Stack


#: The admin key of every test stack (``LEADPIPE_BOOTSTRAP_KEY``), and the headers that send it.
TEST_KEY = f"test-bootstrap-{secrets.token_hex(16)}"
KEY_HEADERS = {"Authorization": f"Bearer {TEST_KEY}"}
#: Where browser tests serve their pages: the one web origin a test stack lets post with ``fetch()``.
PAGE_PORT = free_port()
PAGE_ORIGIN = f"http://127.0.0.1:{PAGE_PORT}"


#: A form of the test stacks' forms file whose submissions are limited hard, for the rate-limit tests.
LIMITED_FORM = "rate-limited"
#: A form that requires a form token at least TOKEN_FILL_S old.
TOKEN_FORM = "token-required"
TOKEN_FILL_S = 2
#: Signs the test stacks' form tokens (``CAPTURE_TOKEN_SECRET``), so a test can sign an expired one.
TOKEN_SECRET = f"test-tokens-{secrets.token_hex(16)}"
#: Forms verified by the fake CAPTCHA service, failing open and failing closed.
CAPTCHA_FORMS = {"open": "captcha-open", "closed": "captcha-closed"}
CAPTCHA_TIMEOUT_S = 0.5


def pytest_configure(config: pytest.Config) -> None:
    # The test stacks listen on 127.0.0.1: behind a corporate proxy (http_proxy set, as pip needs it) every test
    # client's request to them went to the proxy. httpx and the standard library both heed NO_PROXY.
    for name in ("NO_PROXY", "no_proxy"):
        kept = [host for host in os.environ.get(name, "").split(",") if host.strip()]
        os.environ[name] = ",".join(dict.fromkeys([*kept, "127.0.0.1", "localhost", "::1"]))


@pytest.fixture(autouse=True)
def _logging_left_as_it_was() -> Iterator[None]:
    """A test that runs a command configures the process's logging (``leadpipe_common.logging.configure``), its
    handler writing to the test runner's stderr of that test: the next tests must log as before it."""
    config, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quieted = {name: logging.getLogger(name).level for name in QUIETED}
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, was in quieted.items():
        logging.getLogger(name).setLevel(was)


def _test_forms(data_dir: Path) -> Path:
    """The shipped forms plus the bot-defence ones: a tight rate limit (every other test posts from one address),
    a required form token, a CAPTCHA failing open and one failing closed."""
    shipped_forms = importlib.resources.files("capture") / "data" / "forms.yaml"
    bundled = parse_yaml(shipped_forms.read_text(), shipped_forms)
    bundled["forms"][LIMITED_FORM] = {"name": "Rate limit test", "rate_limit": "3/minute"}
    bundled["forms"][TOKEN_FORM] = {"name": "Token test", "require_token": True, "min_fill_seconds": TOKEN_FILL_S,
                                    "token_max_age_seconds": 3600}
    for mode, form_id in CAPTCHA_FORMS.items():
        bundled["forms"][form_id] = {"name": f"CAPTCHA failing {mode}", "captcha": {
            "verify_url": VERIFIER.url, "field": "cf-turnstile-response", "secret_env": "TEST_CAPTCHA_SECRET",
            "timeout_s": CAPTCHA_TIMEOUT_S, "on_error": mode}}
    path = data_dir / "forms.yaml"
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(bundled))
    return path


#: The webhook secret the test receiver verifies with; the test subscriptions list another one beside it (a
#: rotation: every secret signs each delivery).
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"leadpipe-test-webhook-secret-32b").decode()
OLD_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"leadpipe-old-webhook-secret-32by").decode()
#: Leads with this utm_source are delivered to the test receiver; with WEBHOOK_GONE_SOURCE, to its /gone (410).
WEBHOOK_SOURCE = "webhook-test"
WEBHOOK_GONE_SOURCE = "webhook-gone"
#: ... and with this one, to its /broken (500 until fixed), under a retry window of seconds: ~2 s, time for
#: four or five attempts at DELIVERY_RETRY_BASE_S before the delivery is dead.
WEBHOOK_DOWN_SOURCE = "webhook-down"
DOWN_RETRY_HOURS = 0.0006
#: ... and with this one, to subscriptions the tests make through the admin API (the receiver's /api).
WEBHOOK_API_SOURCE = "webhook-api"


def receiver_log(data_dir: Path) -> Path:
    """Where the stack's webhook receiver (``testing.receiver``) writes one JSON line per request."""
    return data_dir / "receiver.jsonl"


def _test_receiver(data_dir: Path) -> Path:
    """Start the failing, verifying webhook receiver (a process that dies with the tests) and write the delivery
    subscriptions that point at it."""
    port = free_port()
    subprocess.Popen([sys.executable, "-m", "leadpipe_common.testing.receiver", "--port", str(port),
                      "--secret", WEBHOOK_SECRET, "--log", str(receiver_log(data_dir))],
                     stdin=subprocess.DEVNULL, preexec_fn=die_with_parent(signal.SIGKILL))
    events = ["lead.routed", "lead.stage_changed", "lead.sla_breached", "lead.reengaged"]
    subscriptions = {"subscriptions": [
        {"id": "test-crm", "url": f"http://127.0.0.1:{port}/hooks", "secrets": [OLD_WEBHOOK_SECRET, WEBHOOK_SECRET],
         "events": events, "filter": {"source": WEBHOOK_SOURCE}},
        {"id": "test-gone", "url": f"http://127.0.0.1:{port}/gone", "secrets": [WEBHOOK_SECRET],
         "events": ["lead.routed"], "filter": {"source": WEBHOOK_GONE_SOURCE}},
        {"id": "test-down", "url": f"http://127.0.0.1:{port}/broken", "secrets": [WEBHOOK_SECRET],
         "events": ["lead.routed"], "filter": {"source": WEBHOOK_DOWN_SOURCE}, "retry_hours": DOWN_RETRY_HOURS},
    ]}
    path = data_dir / "subscriptions.yaml"
    path.write_text(yaml.safe_dump(subscriptions))
    return path


#: Leads from this country go to the SHIFT_TEAM, whose one rep is off shift until a test says otherwise.
SHIFT_COUNTRY = "AQ"
SHIFT_TEAM = "shift-test"
SHIFT_REP = "sol.shift"


def always_on_shift(reps: dict) -> dict:
    """A reps document whose reps can all take leads at any hour of any day (no holidays, no caps): the test
    stacks' routing must not depend on the time of day the tests run at."""
    return {**reps, "working_hours": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00",
                                      "end": "24:00"},
            "reps": [{k: v for k, v in r.items() if k not in ("working_hours", "holidays", "capacity")}
                     for r in reps["reps"]]}


def routing_files(data_dir: Path) -> dict[str, Path]:
    """The test stacks' reps and territories files (``ROUTING_REPS_FILE``, ``ROUTING_TERRITORIES_FILE``)."""
    return {"reps": data_dir / "reps.yaml", "territories": data_dir / "territories.yaml"}


def write_test_reps(data_dir: Path, sol_hours: dict) -> None:
    """The shipped reps, always on shift, plus SHIFT_REP with ``sol_hours`` (SHIFT_TEAM waits for them)."""
    shipped = importlib.resources.files("routing") / "data"
    reps = always_on_shift(parse_yaml((shipped / "reps.yaml").read_text(), shipped / "reps.yaml"))
    reps["reps"].append({"id": SHIFT_REP, "name": "Sol Shift", "team": SHIFT_TEAM, "timezone": "UTC",
                         "working_hours": sol_hours})
    reps["teams"] = {**reps.get("teams", {}), SHIFT_TEAM: {"when_nobody_available": "wait"}}
    routing_files(data_dir)["reps"].write_text(yaml.safe_dump(reps, allow_unicode=True))


def _test_routing(data_dir: Path) -> dict[str, str]:
    """Routing data for the test stacks: every shipped rep always on shift, and a SHIFT_TEAM whose rep works
    one hour starting twelve hours from now (so a lead from SHIFT_COUNTRY waits in its queue)."""
    shipped = importlib.resources.files("routing") / "data"
    territories = parse_yaml((shipped / "territories.yaml").read_text(), shipped / "territories.yaml")
    territories["regions"][SHIFT_TEAM] = [SHIFT_COUNTRY]
    territories["teams"].insert(0, {"team": SHIFT_TEAM, "region": SHIFT_TEAM})
    files = routing_files(data_dir)
    files["territories"].write_text(yaml.safe_dump(territories))
    later = (datetime.now(UTC) + timedelta(hours=12)).hour
    write_test_reps(data_dir, {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": f"{later:02d}:00",
                               "end": f"{later + 1:02d}:00" if later < 23 else "24:00"})
    return {"ROUTING_REPS_FILE": str(files["reps"]), "ROUTING_TERRITORIES_FILE": str(files["territories"]),
            "ROUTING_RELOAD_CHECK_S": "0.5", "ROUTING_SLA_CHECK_S": "0.5"}


#: How long routing waits for a request's body in the test stacks.
ROUTING_BODY_DEADLINE_S = 3


#: A consumer group's session as short as the settings allow (3 s). On the embedded broker a new group's first join
#: takes half the session (5 s at the default 10 s), and a killed member's successor waits for its session to
#: lapse: each consumer a test starts, and each crash it recovers from, costs that much less. Tests run only on the
#: embedded broker (a cluster's group.min.session.timeout.ms is 6 s).
QUICK_FAILOVER = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 1000}


def make_test_stack(data_dir: Path, replicas: dict[str, int] | None = None, quick_failover: bool = True) -> Stack:
    """A stack on free ports in ``data_dir``, its services set for tests; ``quick_failover``: ``QUICK_FAILOVER``
    (the benchmark keeps the defaults `make run` has). A service given 0 ``replicas`` is migrated, not started: a
    test stack need not spend a process start, and its CPU while the tests run, on what its tests never use."""
    forms = _test_forms(data_dir)
    replicas = replicas or dict.fromkeys(SERVICES, 1)
    replica_offsets = tuple(REPLICA_PORT_STEP * i for i in range(max(replicas.values())))
    return Stack(
        data_dir=data_dir,
        broker_port=free_port(),
        postgres_port=free_port(),
        base_ports={s: free_port(replica_offsets) for s in SERVICES},
        replicas=replicas,
        # Several partitions a consumer, as on a cluster, however few the embedded broker gets by default:
        # per-partition positions, commits, lag and rebalances stay under test.
        partitions=3,
        durable=False,
        service_logs=True,
        extra_env={"LOG_JSON": "true", "LOG_LEVEL": "INFO", "CAPTURE_CORS_ORIGINS": PAGE_ORIGIN,
                   "LEADPIPE_BOOTSTRAP_KEY": TEST_KEY, "CAPTURE_FORMS_FILE": str(forms),
                   "DELIVERY_SUBSCRIPTIONS_FILE": str(_test_receiver(data_dir)),
                   "DELIVERY_ALLOW_PRIVATE_TARGETS": "true", "DELIVERY_TIMEOUT_S": "1", "DELIVERY_RETRY_BASE_S": "0.2",
                   # A stored subscription that cannot be opened fails /readyz at the next refresh: within a second,
                   # not the default 5 (one query a second, in one process).
                   "DELIVERY_SUBSCRIPTIONS_REFRESH_S": "1",
                   # A retry due sooner than the dispatcher's next idle round waits for that round: at the default
                   # 0.5 s, each of the test receiver's failures (a 500, a timeout, a 429) held a delivery up to half
                   # a second past its backoff, and tests wait for a lead's deliveries one after another. Three more
                   # idle claims a second cost a fraction of a percent of a core.
                   "DELIVERY_DISPATCH_IDLE_S": "0.2",
                   "CAPTURE_TOKEN_SECRET": TOKEN_SECRET, "TEST_CAPTCHA_SECRET": CAPTCHA_SECRET,
                   # Two capture processes, so that what must be race-free across processes is raced.
                   "CAPTURE_WORKERS": "2",
                   # Tests put submissions received long ago in the quarantine (its pages, its purge): the running
                   # processes' purge would delete them under those tests.
                   "CAPTURE_QUARANTINE_KEEP_DAYS": "0",
                   # Every test posts from 127.0.0.1; LIMITED_FORM is the one that is held to a limit.
                   "CAPTURE_RATE_LIMIT": "1000000/minute", **_test_routing(data_dir),
                   # A body trickled past the deadline is refused within a test's patience (the default is 15 s);
                   # routing's, whose bodies come from the tests alone, whole.
                   "ROUTING_BODY_DEADLINE_S": str(ROUTING_BODY_DEADLINE_S),
                   # Every test sends the bootstrap key from 127.0.0.1, where some send wrong keys on purpose: held
                   # to the default, one test's wrong keys would hold up the next one's admin key (unit tests hold
                   # the throttle itself).
                   **{f"{s.upper()}_BAD_KEY_RATE_LIMIT": "1000000/minute"
                      for s in ("capture", "enrichment", "scoring", "routing", "reporting", "delivery")},
                   **{f"{s.upper()}_{name.upper()}": str(value) for s in SERVICES if quick_failover
                      for name, value in QUICK_FAILOVER.items()}},
    )


@contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    """Broker, Postgres, topics, migrations and every service up; all of it gone afterwards."""
    try:
        stack.start_infra()
        stack.migrate()
        stack.start_services()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()
        if stack.postgres:
            stack.postgres.destroy()


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The whole pipeline, once per test session; tests tell their leads apart by id."""
    with running(make_test_stack(Path(tempfile.mkdtemp(prefix="leadpipe-test-")))) as s:
        yield s


@pytest.fixture(scope="session")
def capture_url(stack: Stack) -> str:
    return next(p.url for p in stack.processes if p.service == "capture")


@pytest.fixture(scope="session")
def bootstrap(stack: Stack) -> str:
    assert stack.bootstrap
    return stack.bootstrap


@pytest.fixture(scope="session")
async def db(stack: Stack):  # noqa: ANN201
    """An async engine on the stack's database, for asserting on what services stored."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(stack.database_url)
    yield engine
    await engine.dispose()


#: The one pytest-xdist worker that runs every `integration` test (``make test`` runs ``-n 2 --dist loadgroup``).
STACK_GROUP = "stack"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need the real stack are `integration`; `make test-unit` leaves them out. Under pytest-xdist
    they all go to one worker (STACK_GROUP), in order: one session stack, started once, and never two stacks
    at once on a small machine's cores, while the other worker runs the tests that need none. First among the
    hooks, as xdist reads the group in its own (a worker's, registered after this plugin) of this hook."""
    for item in items:
        if {"stack", "faulty"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.xdist_group(STACK_GROUP))
