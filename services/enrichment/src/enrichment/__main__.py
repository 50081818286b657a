from pathlib import Path

from leadpipe_common.cli import service_cli

from enrichment.settings import EnrichmentSettings

cli = service_cli(
    name="enrichment",
    app_factory="enrichment.app:create_app",
    settings_factory=EnrichmentSettings,
    migrations_dir=Path(__file__).parent / "migrations",
)

if __name__ == "__main__":
    cli()
