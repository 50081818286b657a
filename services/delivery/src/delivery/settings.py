from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings

from delivery.domain import LONGEST_RETRY_HOURS, REFUSED_ATTEMPTS

DATA = Path(__file__).parent / "data"


class DeliverySettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="DELIVERY_", extra="ignore", frozen=True)

    port: int = 8005
    # Paced like the stages per lead: of the ~5 records a lead brings (lead.routed and its lifecycle steps)
    # delivery skips most undecoded, so 125 records is about 25 leads' worth.
    fetch_batch_target: int = Field(125, ge=0)
    subscriptions_file: Path = Field(DATA / "subscriptions.yaml", description="webhook subscriptions: url, "
                                                                              "secrets, events, filter")
    allow_private_targets: bool = Field(False, description="allow webhook targets in private and loopback ranges "
                                                           "(tests, a receiver beside you); link-local, cloud "
                                                           "metadata and multicast addresses stay refused")
    retry_hours: float = Field(72, gt=0, le=LONGEST_RETRY_HOURS,
                               description="how long a failing delivery is retried (at most 720); then it is "
                                           "dead, in delivery's own table, not on `leads.deadletter`: "
                                           "`leadpipe-delivery redrive` sends it again")
    # At most 100: about as many as the default window holds, past which the window decides anyway.
    refused_attempts: int = Field(REFUSED_ATTEMPTS, ge=1, le=100,
                                  description="how many attempts in a row its receiver refuses a delivery (a `4xx` "
                                              "other than `408`, `409`, `410`, `425` and `429`, or a redirect: "
                                              "none is followed) before it is given up: dead, as after the retry "
                                              "window, so the lead's next events go (1-100; any other answer or a "
                                              "redrive starts the count again, and so does switching the "
                                              "subscription back on, for the deliveries due then)")
    retry_base_s: float = Field(5, gt=0, description="the first retry's wait; each later one doubles it (with "
                                                    "jitter, at most an hour); after a refusal, from its first in "
                                                    "a row")
    connect_timeout_s: float = Field(5, gt=0, description="connect timeout of one attempt")
    timeout_s: float = Field(15, gt=0, description="total time one attempt may take")
    max_in_flight: int = Field(64, ge=1, description="attempts under way at once in one process")
    per_subscription: int = Field(8, ge=1, description="attempts under way at once to one subscription: a slow "
                                                       "receiver never takes every slot")
    dispatch_idle_s: float = Field(0.5, gt=0, description="how often to look for due deliveries when idle")
    secrets_key: SecretStr | None = Field(
        None, description="seals the webhook secrets of subscriptions made through the admin API (Fernet keys, "
                          "comma-separated: the first seals, all open, and each refresh seals again under the first "
                          "what only a later one opens, so an old key can go; unset: derived from "
                          "`LEADPIPE_SESSION_SECRET`, which `make run` sets). Changing it (or, while it is unset, "
                          "`LEADPIPE_SESSION_SECRET`: `leadpipe-delivery derived-key` prints the key it gives) without "
                          "keeping the old key, or unsetting both, leaves those subscriptions unopenable: delivery "
                          "then consumes nothing and `/readyz` fails until the old key is back or they are deleted")
    subscriptions_refresh_s: float = Field(5, gt=0, description="how often each process reloads the "
                                                                "subscriptions made through the admin API")
    keep_bodies_days: float = Field(30, ge=0, description="how long a finished delivery (delivered, or dead) keeps "
                                                         "its body (the event, with the lead's contact details) and "
                                                         "its receiver's last answer; then both are purged, and a "
                                                         "dead one can no longer be redriven (its row, times, "
                                                         "statuses and attempts stay); and how long what waits "
                                                         "for a subscription a 410 switched off is kept once it "
                                                         "has been off as long: then it is given up, purged; 0: "
                                                         "for ever")
