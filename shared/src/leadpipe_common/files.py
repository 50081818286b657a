"""Reading the editable files a service's settings name (its rules, forms, subscriptions, routing and enrichment
data): whole, as UTF-8.

Guarantees: a file that cannot be used is a ValueError naming the setting that
names it, the file and why, as the Kafka TLS files are named
(``SCORING_RULES_FILE: cannot read /etc/leadpipe/rules.yaml: No such file or
directory``), never a bare ``[Errno 2]`` or codec error that names neither.
``setting`` is whatever names the file to the user: its variable, or a
command's option for a file given there.
"""

from __future__ import annotations

from pathlib import Path


def read_bytes(path: Path, setting: str) -> bytes:
    """The file's bytes; a file that is missing, a directory or not readable is a ValueError saying which."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def decode(data: bytes, path: Path, setting: str) -> str:
    """``data``, read from ``path``, as UTF-8 text; one that is not UTF-8 is a ValueError saying where it is not."""
    try:
        # utf-8-sig: a spreadsheet saving "CSV UTF-8" starts the file with a byte-order mark, which would otherwise
        # be part of the first column's name.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Read with replacement characters, mueller.de spelt with u-umlaut would silently never match.
        raise ValueError(f"{setting}: {path} is not UTF-8 (byte {exc.start}); save it as UTF-8") from None


def read_text(path: Path, setting: str) -> str:
    return decode(read_bytes(path, setting), path, setting)
