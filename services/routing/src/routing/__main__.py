from pathlib import Path

from leadpipe_common.cli import service_cli

from routing.settings import RoutingSettings

cli = service_cli(
    name="routing",
    app_factory="routing.app:create_app",
    settings_factory=RoutingSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    check=lambda s: s.files.load(),
)

if __name__ == "__main__":
    cli()
