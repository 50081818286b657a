from __future__ import annotations

from pathlib import Path

from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings

DATA = Path(__file__).parent / "data"


class EnrichmentSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="ENRICHMENT_", extra="ignore", frozen=True)

    port: int = 8001
    companies_file: Path = DATA / "companies.csv"
    titles_file: Path = DATA / "titles.yaml"
    country_aliases_file: Path = DATA / "country_aliases.yaml"
