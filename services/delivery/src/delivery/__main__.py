from pathlib import Path

from leadpipe_common.cli import service_cli

from delivery.app import load_subscriptions, secret_box
from delivery.commands import add_commands
from delivery.settings import DeliverySettings

cli = service_cli(
    name="delivery",
    app_factory="delivery.app:create_app",
    settings_factory=DeliverySettings,
    migrations_dir=Path(__file__).parent / "migrations",
    check=lambda s: (load_subscriptions(s.subscriptions_file, allow_private=s.allow_private_targets), secret_box(s)),
)
add_commands(cli)

if __name__ == "__main__":
    cli()
