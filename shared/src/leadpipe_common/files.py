"""Reading the editable files a service's settings name (its rules, forms, subscriptions, routing and enrichment
data): whole, as UTF-8, those in YAML as YAML and those in CSV as CSV.

Guarantees: a file that cannot be used is a ValueError naming the setting that
names it, the file and why, as the Kafka TLS files are named
(``SCORING_RULES_FILE: cannot read /etc/leadpipe/rules.yaml: No such file or
directory``), never a bare ``[Errno 2]`` or codec error that names neither.
``setting`` is whatever names the file to the user: its variable, or a
command's option for a file given there.

Every YAML file the project reads is read with ``parse_yaml``: a mapping that
gives one key twice is refused, naming the file, the key and the line and
column of each (plain YAML keeps the last and drops the first without a word),
and so is a key YAML would read as a number other than it is written
(``0042:`` is 34 in YAML 1.1).
YAML that does not parse is a ValueError naming the file and where.

Every CSV file is read with ``parse_csv``: each row with its line, so that a
check of a row names ``accounts.csv:4``; a column the file does not know and
a value under no column are refused, not dropped.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from leadpipe_common.problems import closest


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


class KeyProblem(yaml.constructor.ConstructorError):
    """A mapping key the loader refuses, at ``node``: its line and column counted from 1, as an editor counts them,
    and ``reason``."""

    def __init__(self, node: yaml.Node, reason: str) -> None:
        self.line, self.column = node.start_mark.line + 1, node.start_mark.column + 1
        self.reason = reason
        super().__init__(None, None, reason, node.start_mark)

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason}"


class RepeatedKey(KeyProblem):
    """A mapping gives one key twice."""

    def __init__(self, first: yaml.Node, again: yaml.Node) -> None:
        self.key = _written(again)
        # yes: and true: are one key to YAML: the first is named as it was written, or it would not be found.
        spelt = "" if _written(first) == self.key else f", as {_written(first)}"
        super().__init__(again, f"{self.key} is given again (first on line {first.start_mark.line + 1}{spelt}): "
                                "YAML would keep only the last and drop the first without a word; give it once")


class NumberKey(KeyProblem):
    """A mapping key YAML reads as a number other than it is written (``0042:`` is 34)."""

    def __init__(self, node: yaml.Node, value: int) -> None:
        super().__init__(node, f"YAML reads the key {node.value!r} as the number {value}: quote it "
                               f"('{node.value}') if it is a name")


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` refusing a mapping that gives one key twice (``RepeatedKey``): a second ``fit:`` in the
    rules would replace the first whole, a second ``secrets:`` in the middle of a rotation would drop the old
    secret, and neither would say so. Two merges (``<<:``) in one mapping are a repeat too (the later would win);
    the keys a merge brings are not, being meant to be overridden by those beside it."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        #: Mappings whose own keys were checked. Each is checked before PyYAML flattens it, which puts the keys
        #: its merges bring among its own, in place: an anchored mapping with a merge and a key overriding it,
        #: met again through an alias, would otherwise seem to give that key twice.
        self._checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        # PyYAML flattens every mapping before building it, and a merge's mapping before the one merging it.
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._check_once_a_key(node)
        super().flatten_mapping(node)

    def _check_once_a_key(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = ("<<",) if key_node.tag == "tag:yaml.org,2002:merge" else self.construct_object(key_node, deep=True)
            if (isinstance(key, int) and not isinstance(key, bool) and key_node.tag == "tag:yaml.org,2002:int"
                    and isinstance(key_node, yaml.ScalarNode) and key_node.value != str(key)):
                # YAML 1.1 reads 0042 as octal (34), 0x1F as 31, 1_000 as 1000 and 1:30 as 90: an id written so
                # would silently be another, and two spellings of one number the same key.
                raise NumberKey(key_node, key)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeLoader refuses it itself, saying why
                continue
            if first is not key_node:
                raise RepeatedKey(first, key_node)


def _written(key: yaml.Node) -> str:
    return repr(key.value) if isinstance(key, yaml.ScalarNode) else f"the key on line {key.start_mark.line + 1}"


def parse_yaml(text: str, path: Path) -> Any:
    """``text``, read from ``path``, as YAML (None when it holds none). Text that is not YAML, or gives a key twice
    in one mapping, is a ValueError naming the file and where: ``rules.yaml:14:1: 'fit' is given again ...``."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except KeyProblem as exc:
        raise ValueError(f"{path}:{exc.line}:{exc.column}: {exc.reason}") from None
    except yaml.MarkedYAMLError as exc:
        # One line, where an editor finds it: PyYAML's own text spans lines and names "<unicode string>".
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        said = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise ValueError(f"{where}: not valid YAML: {said}") from None
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, KeyError, OverflowError, RecursionError) as exc:
        # PyYAML's builders of values raise plain errors of their own: a date that is no date (version:
        # 2026-02-30) is a ValueError "day is out of range for month", a !!bool maybe a KeyError; unnamed, no
        # one could tell which file, let alone where.
        raise ValueError(f"{path}: not valid YAML: {exc!r}" if isinstance(exc, KeyError | RecursionError)
                         else f"{path}: not valid YAML: {exc}") from None


def _read(reader: Any, path: Path) -> Iterator[list[str]]:
    """``reader``'s rows, or a ValueError naming ``path`` and the line for what the csv module cannot read (a value
    over its 128 KiB field limit, say), which was a traceback."""
    try:
        yield from reader
    except csv.Error as exc:
        raise ValueError(f"{path}:{reader.line_num}: not read as CSV: {exc}") from None


def parse_csv(text: str, path: Path, columns: Sequence[str],
              required: Collection[str]) -> list[tuple[int, dict[str, str]]]:
    """``text``, read from ``path``, as CSV under a header row of ``columns`` (those ``required`` and any others):
    each row's line (where it ends, as an editor counts) and its value of every column, "" for one the header or
    the row leaves out. Blank lines are passed over.

    Refused, as a ValueError naming the file and, for a row, its line: a header without a required column, naming
    one twice, or naming one not among ``columns`` (naming them, and the one meant when one is close: ``country``
    for ``Country``): its values would be dropped without a word, every company's country read as unknown; a row
    without a value of a required column; and a row with a value under no column the header names, as a comma
    in a value unquoted gives (``SAP, SE``), shifting the values after it."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows_read = _read(reader, path)
    header = next(rows_read, [])
    twice = sorted({name for name in header if name.strip() and header.count(name) > 1})
    if twice:
        raise ValueError(f"{path}: the header names {', '.join(map(repr, twice))} twice: the values of one would be "
                         "dropped")
    unknown = [name for name in header if name.strip() and name not in columns]
    if unknown:
        raise ValueError(f"{path}: unknown columns {unknown} in the header (known: {', '.join(columns)})"
                         f"{_columns_meant(unknown, columns)}")
    missing = [name for name in columns if name in required and name not in header]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    rows = []
    for values in rows_read:
        if not values:
            continue
        line = reader.line_num
        stray = next(((n, v) for n, v in enumerate(values)
                      if v.strip() and (n >= len(header) or not header[n].strip())), None)
        if stray is not None:
            raise ValueError(f"{path}:{line}: value {stray[0] + 1} ({stray[1]!r}) is under no column the header "
                             'names (a value holding a comma is quoted: "Acme, Inc.")')
        row = dict(zip(header, values, strict=False))
        short = next((name for name in columns if name in required and name not in row), None)
        if short:
            raise ValueError(f"{path}:{line}: missing the {short} column (the row has fewer values than the header)")
        rows.append((line, {name: row.get(name, "") for name in columns}))
    return rows


def _columns_meant(unknown: Sequence[str], columns: Sequence[str]) -> str:
    """"; did you mean country for 'Country'?" for the unknown columns a known one is close to, "" for none."""
    by_fold = {c.lower(): c for c in columns}
    meant = {name: closest(name.strip(), columns) for name in unknown}
    said = [f"{close} for {name!r}" for name, close in meant.items() if close]
    if not said:
        return ""
    exactly = (" (column names are matched as written, case and spaces too)"
               if any(name.strip().lower() in by_fold for name in unknown) else "")
    return f"; did you mean {', '.join(said)}?{exactly}"
