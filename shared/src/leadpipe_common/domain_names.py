"""How an internet domain name is compared: in its ASCII form, lower case.

An internationalised domain has two spellings. Capture keeps an address as
email-validator normalises it, the Unicode one (``jo@闲鱼.shop``), while a
list or a file may hold either: the disposable-domains list writes
``xn--di5au2k.shop``, a user editing ``accounts.csv`` may write ``müller.de``.
Compared as written, the two spellings of one domain never meet; compared
through ``ascii_domain``, on both sides, they do. Only comparisons use it:
what a service shows and publishes keeps the spelling it was given.
"""

from __future__ import annotations

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
