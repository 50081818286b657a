from pathlib import Path

from leadpipe_common.cli import service_cli

from reporting.commands import add_commands
from reporting.settings import ReportingSettings

cli = service_cli(
    name="reporting",
    app_factory="reporting.app:create_app",
    settings_factory=ReportingSettings,
    migrations_dir=Path(__file__).parent / "migrations",
)
add_commands(cli)

if __name__ == "__main__":
    cli()
