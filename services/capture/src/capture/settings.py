from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings, hard_to_guess
from leadpipe_common.throttle import parse_rate

from capture.domain import parse_origins

DATA = Path(__file__).parent / "data"


class CaptureSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="CAPTURE_", extra="ignore", frozen=True)

    port: int = 8000
    # More processes share the port (and the outbox, through SKIP LOCKED) when
    # capture has cores of its own. Beside every other service on 2 cores, one
    # does more: make bench, 1 worker against 2, whole-stack CPU per lead at
    # 100 leads/s 6.3 against 8.9 ms (each process's relay, follower and
    # writer batches are per process), capture sharing the cores 940 against
    # 683 req/s; capture alone 1,500-1,700 against 2,260-2,450 req/s.
    workers: int = Field(1, ge=1)
    forms_file: Path = Field(DATA / "forms.yaml", description="forms, thank-you URLs, default offers and the "
                                                               "origins allowed to post each one")
    identity_file: Path = Field(DATA / "identity.yaml", description="how an e-mail address names a person "
                                                                     "(`+tags`, dots at gmail.com): one open lead each")
    cors_origins: str = Field("", description="comma-separated web origins (`https://www.example.com`) whose pages "
                                              "may post any form or the JSON API with `fetch()`; none by default")

    # Not named as the base class's PUBLIC_ORIGIN validator (_origins): a method of the same name replaced it, and
    # capture took any public origin as typed.
    @field_validator("cors_origins")
    @classmethod
    def _cors_origins(cls, v: str) -> str:
        parse_origins(v, "CAPTURE_CORS_ORIGINS")
        return v

    def origins(self) -> frozenset[str]:
        return parse_origins(self.cors_origins, "CAPTURE_CORS_ORIGINS")

    rate_limit: str = Field("30/minute", description="submissions per client address and form (a form's "
                                                     "`rate_limit` overrides it); over it: `429` with `Retry-After`")
    key_rate_limit: str = Field("1000/second", description="submissions per `capture:write` key, for server-to-server "
                                                          "imports (a key's own limit overrides it)")

    token_secret: SecretStr | None = Field(
        None, description="signs form tokens (forms with `require_token`; 32 characters or more); give every capture "
                          "process the same one (unset: derived from `LEADPIPE_SESSION_SECRET`, which `make run` "
                          "sets)")

    @field_validator("token_secret")
    @classmethod
    def _token_secret_hard_to_guess(cls, v: SecretStr | None) -> SecretStr | None:
        # As LEADPIPE_SESSION_SECRET, which it is derived from when unset: guessed from one token a bot fetched,
        # every form's token would be the bot's to make.
        return hard_to_guess(v, "it signs the form tokens")

    @field_validator("rate_limit", "key_rate_limit")
    @classmethod
    def _rate(cls, v: str, info: Any) -> str:
        parse_rate(v, f"CAPTURE_{info.field_name.upper()}")
        return v
    write_batch_max: int = Field(500, ge=1, description="most leads committed in one write round (requests "
                                                        "arriving while one commits share the next)")
    # A request alone in its round pays a statement and a commit for itself. At a steady 100 leads/s (back to
    # back, twice each way) rounds of ~3 took the stack's context switches from 20.3 to 16.1 a lead and
    # Postgres from ~1.1 to ~0.85 ms a lead, for ~20 ms more a request. Rounds of 5 (at most 50 ms, was 4 and
    # 20 ms; held stack, alternating, twice): capture 1.11/1.22 -> 0.96/1.04 and Postgres 0.72/0.77 ->
    # 0.64/0.65 ms a lead, context switches 14.3 -> 12.8; the 202 at p50 14 -> 24 ms (p90 25 -> 44), request
    # to `lead.captured` unchanged (73 ms: the relay's linger sets it). Under 20 submissions a second a round
    # never waits.
    write_linger_ms: int = Field(50, ge=0, description="how long a write round waits at most, once its first "
                                                       "submission is in, for others to share its statement "
                                                       "(it goes once `WRITE_ROUND_TARGET` are in; 0: never)")
    write_round_target: int = Field(5, ge=0, description="submissions a write round should hold: its wait is as "
                                                         "long as they take at the recent rate, none when not "
                                                         "one more is expected within `WRITE_LINGER_MS`; 0: "
                                                         "every round waits the whole linger")
    # The writer's rounds go one after another: a round waiting on a row some other transaction holds (an admin's
    # open transaction, a stuck follower) held up every request of the process for as long as that lasted.
    # Normal waits (another process's round, a follower's batch) take milliseconds. Set on every connection of
    # capture's pool at connect (no round trip); migrations (`leadpipe-capture migrate`) and admin commands build
    # engines of their own, without them.
    db_lock_timeout_ms: int = Field(2000, ge=0, description="how long capture's statements wait for a row or lock "
                                                           "another transaction holds (a person's row an admin "
                                                           "holds, say) before giving up: the request answers "
                                                           "`503` with `Retry-After`, the lifecycle follower "
                                                           "retries its batch; 0: for ever")
    db_statement_timeout_ms: int = Field(5000, ge=0, description="how long one statement of capture's may take, "
                                                                "waits included, before Postgres cancels it (a "
                                                                "`503` with `Retry-After` for the request); a "
                                                                "write's statement Postgres has not answered a "
                                                                "second after it (silent: a failover) is given up "
                                                                "on, its requests `503` too; the re-driver's are "
                                                                "not limited; 0: no limit, on either side")
    # A public post's other database work (a bot's submission kept in quarantine, a key's lookup) gives up about as
    # soon as a write does (after one statement's 6 s of silence): a few statements, each ended by the statement
    # timeout on a working Postgres. Keep it above the statement timeout.
    db_request_deadline_s: float = Field(10.0, ge=0)
    # A statement capture gave up on (its write's deadline, a shutdown) is closed on capture's side with no cancel
    # sent (see db.py): Postgres runs it on, holding the people's rows, advisory and Idempotency-Key locks, until
    # it ends or its timeout does (never, for the re-driver's), while the pool opens a new connection in its
    # place. Postgres notices a closed connection while idle at once, while running a statement only at this
    # check. Not sent with the connection's start-up, as the timeouts are: a Postgres before 14 refused every
    # connection that asked for it (SQLSTATE 42704, a 500 for every request); set once the server's version is
    # known, a round trip per new connection.
    db_client_check_ms: int = Field(1000, ge=0, description="how often Postgres checks, while it runs one of "
                                                           "capture's statements, that capture is still "
                                                           "connected, so that a statement capture gave up on "
                                                           "ends then, not at its timeout (Postgres's "
                                                           "`client_connection_check_interval`, which Postgres "
                                                           "14 or later has on Linux, and 15 or later on macOS "
                                                           "or a BSD too: set 0 for any other, which refuses "
                                                           "it, Windows included; an older Postgres has none "
                                                           "and is not asked); 0: never")

    def db_server_settings(self) -> dict[str, str]:
        return {"lock_timeout": str(self.db_lock_timeout_ms), "statement_timeout": str(self.db_statement_timeout_ms)}

    def db_settings_for(self, server_major: int) -> dict[str, str]:
        """The Postgres settings a new connection of the serving process's pool is given once it is known to be
        on a server of version ``server_major``: those ``db_server_settings`` cannot ask of every server."""
        if self.db_client_check_ms and server_major >= 14:
            return {"client_connection_check_interval": str(self.db_client_check_ms)}
        return {}

    def write_statement_deadline_s(self) -> float | None:
        """How long each statement of a write round may go unanswered before the writer stops waiting for Postgres
        (see ``writer``): the statement timeout, and a second for the network and the answer of a server that
        cancels one; none without a statement timeout."""
        return self.db_statement_timeout_ms / 1000 + 1.0 if self.db_statement_timeout_ms else None

    outbox_batch_max: int = Field(1000, ge=1, description="most leads, touches and outbox messages the relay "
                                                         "publishes in one round")
    # A write wakes its own process's relay; the idle poll only finds what a
    # process that died left behind. Woken, the relay waits so that one round
    # publishes every lead written meanwhile: a fixed 50 ms at a steady 100
    # leads/s cut the whole stack's CPU per lead from 11.5 to 8.2 ms (fewer
    # relay transactions and produce requests, fuller batches downstream).
    # Paced to 20 messages (10 leads) a round, at most 100 ms: at 100 leads/s
    # it waits 100 ms (5.35 -> 5.14 ms a lead against 50 ms, back to back),
    # at 300/s about 33 ms, so the faster leads come the sooner each leaves;
    # under 5 leads/s, when not one more would come in it, not at all.
    outbox_linger_ms: int = Field(100, ge=0)
    outbox_round_target: int = Field(20, ge=0)
    # Outcomes only feed the re-drive deadline (minutes away): the lifecycle
    # follower fetches lazily, in big batches, and leaves the CPU to requests.
    fetch_max_wait_ms: int = Field(1000, ge=1)
    fetch_batch_target: int = Field(0, ge=0)
    redrive_after_s: float = Field(300, gt=0, description="a lead with no terminal outcome on `leads.lifecycle` "
                                                          "this long after it was published is published again")
    redrive_check_s: float = Field(30, gt=0, description="how often to look for such leads")
    redrive_max: int = Field(10, ge=1, description="re-drives of one lead at most (then it is counted as "
                                                   "exhausted, for a human)")
    redrive_backoff: float = Field(2.0, ge=1.0, description="each further re-drive of a lead waits this factor "
                                                            "longer, up to an hour (never less than "
                                                            "`CAPTURE_REDRIVE_AFTER_S`)")
    quarantine_keep_days: float = Field(30, ge=0, description="how long the quarantine keeps a submission taken for "
                                                              "a bot's (what it said, for an admin to review and "
                                                              "release) after it was received; then it is deleted, "
                                                              "released or not (the spam report still counts it); "
                                                              "0: for ever")
