from pathlib import Path

from leadpipe_common.cli import service_cli

from capture.app import check
from capture.commands import add_commands
from capture.settings import CaptureSettings

cli = service_cli(
    name="capture",
    app_factory="capture.app:create_app",
    settings_factory=CaptureSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    check=check,
)
add_commands(cli)

if __name__ == "__main__":
    cli()
