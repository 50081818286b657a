"""delivery's composition root: the only place that reads settings and builds what the service needs."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from leadpipe_common.files import parse_yaml, read_text
from leadpipe_common.service import consumer_app, utc_now

from delivery.domain import Subscription, parse_subscriptions
from delivery.handlers import Delivery
from delivery.service import SERVICE
from delivery.settings import DeliverySettings
from delivery.subscriptions import SecretBox, SubscriptionBook


def load_subscriptions(path: Path, *, allow_private: bool,
                       setting: str = "DELIVERY_SUBSCRIPTIONS_FILE") -> dict[str, Subscription]:
    """Raises ValueError naming the file and the entry that is wrong (or, read, its setting and why)."""
    raw = parse_yaml(read_text(path, setting), path) or {}
    try:
        return parse_subscriptions(raw, allow_private=allow_private)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except (TypeError, AttributeError, KeyError) as exc:
        # Data of a shape no check foresaw is a wrong file all the same, never a crash at start.
        raise ValueError(f"{path}: invalid ({type(exc).__name__}: {exc})") from None


def secret_box(settings: DeliverySettings) -> SecretBox | None:
    return SecretBox.from_secrets(
        settings.secrets_key.get_secret_value() if settings.secrets_key else None,
        settings.session_secret.get_secret_value() if settings.session_secret else None)


def create_app(settings: DeliverySettings | None = None) -> FastAPI:
    settings = settings or DeliverySettings()
    book = SubscriptionBook(load_subscriptions(settings.subscriptions_file,
                                               allow_private=settings.allow_private_targets),
                            secret_box(settings), allow_private=settings.allow_private_targets)
    return consumer_app(SERVICE, settings, lambda clients: Delivery(book, clock=utc_now, http=clients.http))
