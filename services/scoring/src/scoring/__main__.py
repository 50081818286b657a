from pathlib import Path

from leadpipe_common.cli import service_cli

from scoring.app import load_rules
from scoring.commands import add_commands
from scoring.settings import ScoringSettings

cli = service_cli(
    name="scoring",
    app_factory="scoring.app:create_app",
    settings_factory=ScoringSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    check=lambda s: load_rules(s.rules_file),
)
add_commands(cli)

if __name__ == "__main__":
    cli()
