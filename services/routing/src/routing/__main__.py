from pathlib import Path

from leadpipe_common.cli import service_cli

from routing.commands import add_commands
from routing.settings import RoutingSettings

cli = service_cli(
    name="routing",
    app_factory="routing.app:create_app",
    settings_factory=RoutingSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    check=lambda s: s.files.load(),
)
add_commands(cli)

if __name__ == "__main__":
    cli()
