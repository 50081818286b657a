"""How an internet domain name is compared: in its ASCII form, lower case; and what is one as an address has it.

An internationalised domain has two spellings. Capture keeps an address as
email-validator normalises it, the Unicode one (``jo@闲鱼.shop``), while a
list or a file may hold either: the disposable-domains list writes
``xn--di5au2k.shop``, a user editing ``accounts.csv`` may write ``müller.de``.
Compared as written, the two spellings of one domain never meet; compared
through ``ascii_domain``, on both sides, they do. Only comparisons use it:
what a service shows and publishes keeps the spelling it was given.

A file that lists domains to match leads by (``companies.csv``, the scoring
rules) takes only what ``is_domain`` says an address may end in: anything
else would be read and match no lead without a word. ``domain_alone`` finds
the domain in what names one as a site or an address does, for the refusal
to say what to write instead (``domain_column``, the check such a file's
domain column goes through, routing's ``accounts.csv`` too).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import idna


def ascii_domain(domain: str) -> str:
    """``domain`` in its ASCII form (IDNA 2008 with the UTS 46 mapping, as email-validator reads an address), lower
    case: ``闲鱼.SHOP`` and ``XN--DI5AU2K.shop`` are both ``xn--di5au2k.shop``. A name IDNA refuses (a label with
    an emoji or an underscore) stays as it is, lower case: it equals only itself."""
    if domain.isascii():
        # Already ASCII (an xn-- label is the ASCII form): nothing IDNA could change but the case.
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError is one
        return domain.lower()


def unicode_domain(domain: str) -> str:
    """``domain`` in its Unicode form, folded as IDNA 2008 with the UTS 46 mapping folds it, the spelling
    email-validator keeps an address's domain in: ``Straße.DE`` and ``STRAẞE.de`` are ``straße.de``. Not
    ``str.casefold``, which makes ß "ss" and ς "σ": ``straße.de`` (``xn--strae-oqa.de``) and ``strasse.de`` are two
    domains. A name the mapping refuses stays as it is, lower case."""
    if domain.isascii():
        return domain.lower()
    try:
        return idna.uts46_remap(domain, std3_rules=False, transitional=False)
    except UnicodeError:  # idna.InvalidCodepoint is one
        return domain.lower()


#: A domain name in its ASCII form (``ascii_domain``): two labels or more of letters, digits and inner hyphens.
_DOMAIN = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))+")


def is_domain(written: str) -> bool:
    """Whether ``written``, in either spelling and any case, is a domain as it follows the @ of an address:
    ``acme.com`` and ``Müller.de`` are; ``acme``, ``exa_mple.com``, ``-acme.com``, ``acme.com.`` and ``""`` are
    not."""
    return bool(_DOMAIN.fullmatch(ascii_domain(written)))


def domain_alone(written: str) -> str | None:
    """The domain ``written`` names as a site, an address, a fully qualified name or with spaces around does
    (``https://www.acme.com/about``, ``sales@acme.com``, ``acme.com.``, `` acme.com``: ``acme.com``), in the case
    written; None when it is such a domain itself, or names none."""
    alone = written.strip()
    if "/" in alone:
        try:
            alone = urlsplit(alone if "//" in alone else f"//{alone}").hostname or ""
        except ValueError:  # https://[acme.com
            alone = ""
    alone = alone.rpartition("@")[2].strip(".")
    # www.acme.com is the site's name, but no address ends in it; www.com is a domain of its own.
    if alone.lower().startswith("www.") and alone.count(".") > 1:
        alone = alone[4:]
    return alone if alone != written and is_domain(alone) else None


def domain_column(written: str) -> str:
    """A file's domain column, stripped and lower case, or a ValueError saying what is wrong with it: empty, or
    what names a domain as a site or an address does (``https://acme.com``, ``@acme.com``, ``acme.com.``), which a
    lead's address never ends in, with the domain to write instead. Whether the rest is a domain (``is_domain``)
    is the caller's to say: a file may know more of why it is not."""
    domain = written.strip().lower()
    if not domain:
        raise ValueError("empty domain")
    alone = domain_alone(domain)
    if alone is not None:
        raise ValueError(f"domain {written.strip()!r} is not what follows the @ of an address: write the domain "
                         f"alone: {alone}")
    return domain
