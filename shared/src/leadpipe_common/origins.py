"""Web origins as a browser writes them in the ``Origin`` header, so that one written by an operator compares
equal with the header a page of it sends.

Guarantees: ``web_origin`` gives ``scheme://host[:port]`` with the scheme
http or https, the host in lower case (an IPv6 address in brackets), no
port when it is the scheme's default (80, 443: a browser leaves it out),
the port's number without leading zeros, and no trailing slash; anything
else (no scheme or another one, a path, a query, a user, a port that is not
a number in 1-65535) is a ValueError saying what is wrong with it. Pure, of
the standard library alone: a service's domain module may use it as much as
the settings do.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: An origin written out plainly, ``http(s)://host[:port]`` in lower-case letters, digits, dots and hyphens: what a
#: forms file may name, and all a page's ``frame-ancestors`` takes (nothing a policy would read as a wildcard, another
#: source or another directive). ASCII digits only: ``\d`` also takes other scripts' (a port ٤٤٣), which no browser
#: writes and ``web_origin`` refuses.
PLAIN_ORIGIN = re.compile(r"(https?)://[a-z0-9.-]+(?::([0-9]{1,5}))?")

#: The ports a browser leaves out of an ``Origin`` (the scheme's default).
_DEFAULT_PORTS = {"http": 80, "https": 443}


def web_origin(text: str) -> str:
    """``text`` as a browser writes it in ``Origin`` (``https://host[:port]``: lower case, no default port, no
    trailing slash), or a ValueError saying what is wrong with it."""
    parts = urlsplit(text.strip())
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or any(c.isspace() for c in parts.netloc):
        raise ValueError(f"{text!r} is not an origin: write http(s)://host[:port], e.g. https://reports.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{text!r} is not an origin: write http(s)://host[:port] alone, with no path, query or user")
    try:
        port = parts.port  # None when none is given
    except ValueError:  # not a number, or past 65535
        port = 0
    if port == 0:
        raise ValueError(f"{text!r} has a port that is not a number in 1-65535")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != _DEFAULT_PORTS[parts.scheme] else "")
