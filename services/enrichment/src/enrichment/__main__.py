from pathlib import Path

from leadpipe_common.cli import service_cli

from enrichment.reference import load_reference
from enrichment.settings import EnrichmentSettings

cli = service_cli(
    name="enrichment",
    app_factory="enrichment.app:create_app",
    settings_factory=EnrichmentSettings,
    migrations_dir=Path(__file__).parent / "migrations",
    check=lambda s: load_reference(s.companies_file, s.titles_file, s.country_aliases_file, s.personal_mail_file,
                                   s.mail_typos_file),
)

if __name__ == "__main__":
    cli()
