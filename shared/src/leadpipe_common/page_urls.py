"""What of a page's address (an attribution's ``landing_page`` or ``referrer``) may be kept without its visitor.

Pure, no IO. A page's link often carries the person who followed it: an e-mail campaign's ``?email=ada@...``, a
pre-filled form's ``?name=&phone=``, a password reset's or a magic login's token, a mailing tool's subscriber id.
Capture cuts those from every submission (``without_visitor``), as the lifecycle keeps the attribution for ever;
an erasure keeps less still (``query=False``: the origin and path alone). One function, so that the two never
disagree on what names someone.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus, urlsplit, urlunsplit

#: The attribution fields that are addresses of pages, whose query may hold the person's address.
PAGE_FIELDS = ("landing_page", "referrer")
#: Parameter names (compared in lower case, with ``-``, ``.`` and spaces read as ``_``; in a bracketed name such as
#: ``contact[first_name]``, each part) whose value is the person, or a key to their account, whatever it holds.
PERSONAL_NAMES = frozenset({
    # who they are
    "mail", "name", "first_name", "firstname", "last_name", "lastname", "fname", "lname", "full_name", "fullname",
    "surname", "tel", "mobile", "user", "username", "login", "uid", "user_id", "userid", "address",
    # a way into their account: a one-time code, a session, a password or a key
    "pass", "passcode", "pwd", "pin", "otp", "code", "auth", "sid", "sessid", "phpsessid", "key", "api_key", "apikey",
    "access_key", "magic",
    # mailing tools' ids of a subscriber, which their tool (and its API) turns back into the address
    "mc_eid", "mkt_tok", "_hsenc", "_ke", "ml_subscriber", "ml_subscriber_hash", "vero_id", "oly_enc_id",
})
#: ... and any name holding one of these words (``user_email``, ``emailAddress``, ``access_token``,
#: ``reset_password``, ``phone_number``, ``jsessionid``): none is an attribution parameter's.
PERSONAL_WORDS = ("email", "e_mail", "password", "passwd", "token", "secret", "phone", "session")
#: Schemes whose address is a person's, not a page's.
_PERSONAL_SCHEMES = frozenset({"mailto", "tel", "sms"})
#: What an address looks like in a value: an ``@`` with a dot after it (``%40`` once decoded: the query is
#: decoded once before, so this finds ``%2540`` too).
_ADDRESS = re.compile(r"(?:@|%40).*\.", re.IGNORECASE | re.DOTALL)
#: Any ``@`` at all: where a page's path or host holds one (``/people/ada@stripe.com``, ``/@ada``), the page is
#: someone's, and a lost referrer costs less than a kept person.
_ANY_AT = re.compile(r"@|%40", re.IGNORECASE)


def without_visitor(url: str, *, query: bool = True) -> str | None:
    """``url`` without what may name the person who visited it, or None when nothing of it can be kept.

    Cut: the userinfo (``user:pass@``); each query parameter whose name is personal (``PERSONAL_NAMES``,
    ``PERSONAL_WORDS``) or whose name or value holds an address (an ``@``, or ``%40``, with a dot after it); the
    fragment whole when it holds either (``#/reset?token=...``). Kept: the scheme, host and path, and every other
    parameter, known or not (``utm_*``, ``gclid``, ``fbclid``, ``ref``), as written. A URL with nothing to cut is
    returned as it is. None for a path that holds any ``@``, for a ``mailto:``, ``tel:`` or ``sms:`` address, and
    for text no URL parser reads (an unclosed ``[`` in the host, which no browser sends): nothing in it could be
    told apart from the person. ``query=False`` (what an erasure keeps): the scheme, host and path alone."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme.lower() in _PERSONAL_SCHEMES or _ANY_AT.search(unquote(parts.path)):
        return None
    if not query:
        return urlunsplit((parts.scheme, host, parts.path, "", "")) or None
    parameters = parts.query.split("&")
    kept = [p for p in parameters if not _personal(p)]
    kept_query = parts.query if len(kept) == len(parameters) else "&".join(p for p in kept if p)
    fragment = "" if _personal_fragment(parts.fragment) else parts.fragment
    if (host, kept_query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, host, parts.path, kept_query, fragment)) or None


def holds_address(value: str) -> bool:
    """Whether ``value``, a parameter's decoded value, holds what looks like an e-mail address."""
    return bool(_ADDRESS.search(value))


def _personal(parameter: str) -> bool:
    name, equals, _ = parameter.partition("=")
    return bool(_ADDRESS.search(unquote_plus(parameter))) or (bool(equals) and _personal_name(name))


def _personal_name(name: str) -> bool:
    parts = (re.sub(r"[-. ]", "_", part) for part in re.findall(r"[^\[\]]+", unquote_plus(name).strip().lower()))
    return any(part in PERSONAL_NAMES or any(word in part for word in PERSONAL_WORDS) for part in parts)


def _personal_fragment(fragment: str) -> bool:
    # A single-page app keeps its route and parameters there: #/reset-password?token=...&email=...
    parameters = fragment.rpartition("?")[2]
    return bool(_ADDRESS.search(unquote_plus(fragment))) or any(_personal(p) for p in parameters.split("&"))
