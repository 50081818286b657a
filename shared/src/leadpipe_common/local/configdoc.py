"""The README's configuration table, generated from the settings classes.

Guarantees: every variable a leadpipe process reads is a field of a settings
class (the shared ones here, each service's ``<service>.settings``), and the
table lists each of them with its default and its ``description``; nothing
in it is written by hand. The README holds a copy between the
``<!-- config:begin -->`` and ``<!-- config:end -->`` markers, which the
test suite compares with a fresh rendering (``make config-doc`` rewrites it),
so the README cannot drift from the code. Local tooling: no service imports it.
Its command line (``python -m leadpipe_common.local.configdoc [README]``)
refuses a file it cannot read or write, or one without the markers, in one
line, exit code 2, the file left as it was.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from leadpipe_common.cli_help import Command
from leadpipe_common.settings import ConsumerSettings, ServiceSettings, StackSettings, TopicSettings
from leadpipe_common.topology import SERVICES

BEGIN, END = "<!-- config:begin -->", "<!-- config:end -->"
REPLICAS_ROW = ("`<SERVICE>_REPLICAS`", "`1`", "processes `make run` starts of a service, e.g. "
                                            "`make run ENRICHMENT_REPLICAS=3`")


def service_settings(name: str) -> type[ServiceSettings]:
    """The settings class a service declares in ``<name>.settings``."""
    module = importlib.import_module(f"{name}.settings")
    found = [c for _, c in inspect.getmembers(module, inspect.isclass)
             if issubclass(c, ServiceSettings) and c.__module__ == module.__name__]
    if len(found) != 1:
        raise LookupError(f"{name}.settings must declare exactly one settings class, found {found}")
    return found[0]


def _description(cls: type[BaseSettings], field: str) -> str:
    # A service that only changes an inherited default keeps the base class's words.
    for klass in cls.__mro__:
        info = getattr(klass, "model_fields", {}).get(field) if isinstance(klass, type) else None
        if isinstance(info, FieldInfo) and info.description:
            return info.description
    raise LookupError(f"{cls.__name__}.{field} has no description: give its Field one")


def _default(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"bundled `{value.name}`" if value.is_absolute() else f"`{value}`"
    if value == "":
        return "empty"
    return f"`{value}`"


def _env(cls: type[BaseSettings], field: str, info: FieldInfo) -> str:
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def rows() -> list[tuple[str, str, str]]:
    services = {s.name: service_settings(s.name) for s in SERVICES}
    out: list[tuple[str, str, str]] = []
    shared = [(ServiceSettings, f) for f, i in ServiceSettings.model_fields.items() if isinstance(i.validation_alias, str)]
    shared += [(c, f) for c in (TopicSettings, StackSettings) for f, i in c.model_fields.items()
               if _env(c, f, i) not in {_env(ServiceSettings, g, j) for g, j in ServiceSettings.model_fields.items()}]
    for cls, field in shared:
        info = cls.model_fields[field]
        out.append((f"`{_env(cls, field, info)}`", _default(info.default), _description(cls, field)))

    # Every service reads these under its own prefix; defaults a service changes are named.
    per_service = [f for f, i in ConsumerSettings.model_fields.items() if not isinstance(i.validation_alias, str)]
    for field in per_service:
        base = ConsumerSettings.model_fields[field].default
        changed = [f"{name} {_default(cls.model_fields[field].default)}" for name, cls in services.items()
                   if cls.model_fields[field].default != base]
        default = _default(base) + (f" ({', '.join(changed)})" if changed else "")
        out.append((f"`<SERVICE>_{field.upper()}`", default, _description(ConsumerSettings, field)))
    out.append(REPLICAS_ROW)

    for cls in services.values():
        for field, info in cls.model_fields.items():
            if field not in ConsumerSettings.model_fields:
                out.append((f"`{_env(cls, field, info)}`", _default(info.default), _description(cls, field)))
    return out


def table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| {env} | {default} | {meaning} |" for env, default, meaning in rows()]
    return "\n".join(lines) + "\n"


def render(readme: str) -> str:
    """``readme`` with the table between the markers replaced by a fresh one."""
    head, found, rest = readme.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not (found and found_end):
        raise ValueError(f"the README has no {BEGIN} ... {END} block")
    return f"{head}{BEGIN}\n{table()}{END}{tail}"


cli = typer.Typer(add_completion=False)


@cli.command(cls=Command)
def main(readme: Path = typer.Argument(Path("README.md"), help="the README whose table is rewritten in place")) -> None:
    """Rewrite README's configuration table from the settings classes.

    What `make config-doc` runs. The table is the text between the <!-- config:begin --> and <!-- config:end --> markers."""
    try:
        text = readme.read_text(encoding="utf-8")
    except OSError as exc:
        _refuse(readme, f"cannot be read: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        _refuse(readme, f"not UTF-8 (byte {exc.start})")
    try:
        rendered = render(text)
    except ValueError as exc:
        _refuse(readme, str(exc).replace("the README has", "has"))
    try:
        readme.write_text(rendered, encoding="utf-8")
    except OSError as exc:
        _refuse(readme, f"cannot be written: {exc.strerror or exc}")


def _refuse(readme: Path, why: str) -> NoReturn:
    typer.secho(f"{readme}: {why}", err=True, fg="red")
    raise typer.Exit(2)


if __name__ == "__main__":
    cli()
