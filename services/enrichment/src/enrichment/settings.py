from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from leadpipe_common.settings import ConsumerSettings

DATA = Path(__file__).parent / "data"


class EnrichmentSettings(ConsumerSettings):
    model_config = SettingsConfigDict(env_prefix="ENRICHMENT_", extra="ignore", frozen=True)

    port: int = 8001
    companies_file: Path = Field(DATA / "companies.csv",
                                 description="companies by domain, in columns `domain`, `name`, `industry`, "
                                             "`employee_count` (head count), `country` (ISO 3166-1 alpha-2)")
    titles_file: Path = Field(DATA / "titles.yaml", description="job-title rules: seniority and department")
    personal_mail_file: Path = Field(DATA / "personal_mail.txt",
                                     description="personal e-mail domains (providers, relays such as Firefox "
                                                 "Relay or Hide My Email) beside the pinned free-mail list: one a "
                                                 "line, `#` comments; an address there is no business address")
    mail_typos_file: Path = Field(DATA / "mail_typos.yaml",
                                  description="misspelt domains of the largest free-mail providers, listed under "
                                              "the provider's (`gmail.com: [gamil.com, gmial.com]`): an address at "
                                              "one is free mail, its source `typo of gmail.com`")
    country_aliases_file: Path = Field(DATA / "country_aliases.yaml",
                                       description="country names ISO does not know, mapped to their codes (names, "
                                                   "here as in ISO and on the form, are compared without case, "
                                                   "accents, dots or a leading \"the\": `The Netherlands`, `U.K.`, "
                                                   "`México` need no entry); a name several countries go by lists "
                                                   "them (`Korea: [KR, KP]`), and a lead's phone number valid in "
                                                   "exactly one of them decides; `\"\"` names none")
