"""Every published event contract, one JSON schema per type and version, checked in under ``docs/schemas/``.

Guarantees: a version, once published, never changes. ``check`` compares
each event model's schema (descriptions and titles aside: words are not the
contract) with the file of its type and version, and the test suite fails
when they differ: changing an event's shape means a new ``version`` and an
upcaster from the old one (``events.UPCASTERS``), never an edit under the
old number. ``write_new`` (``make schemas``) adds the file of a new version
and refuses to overwrite a published one. Local tooling: no service imports it.
Its command line (``python -m leadpipe_common.local.contracts [ROOT]``)
takes the repository's root, and refuses a directory without ``docs/schemas``
(where it would publish every schema anew) in one line, exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from leadpipe_common.cli_help import Command
from leadpipe_common.events import LATEST, Event

DIR = Path("docs") / "schemas"


def _bare(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _bare(v) for k, v in node.items() if k not in ("description", "title")}
    if isinstance(node, list):
        return [_bare(v) for v in node]
    return node


def contract(model: type[Event]) -> dict[str, Any]:
    """What a consumer of ``model`` accepts, as a JSON schema without prose."""
    return _bare(model.model_json_schema(mode="validation"))


def path_of(root: Path, event_type: str, version: int) -> Path:
    return root / DIR / event_type / f"v{version}.json"


def render(model: type[Event]) -> str:
    return json.dumps(contract(model), indent=2, sort_keys=True) + "\n"


def check(root: Path) -> list[str]:
    """What is wrong: a latest version with no published file, or one whose shape changed."""
    problems = []
    for event_type, model in sorted(LATEST.items()):
        path = path_of(root, event_type, model.version)
        if not path.exists():
            problems.append(f"{event_type} v{model.version} is not published: run `make schemas` and commit "
                            f"{path.relative_to(root)}")
        elif path.read_text(encoding="utf-8") != render(model):
            problems.append(f"{event_type} v{model.version} changed shape since it was published: give the model "
                            f"version {model.version + 1} and an upcaster from v{model.version} "
                            f"(events.UPCASTERS), then `make schemas`")
    return problems


def write_new(root: Path) -> list[Path]:
    """Publish the schema of every version not published yet; never touch a published one."""
    written = []
    for event_type, model in sorted(LATEST.items()):
        path = path_of(root, event_type, model.version)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written


cli = typer.Typer(add_completion=False)


@cli.command(cls=Command)
def main(root: Path = typer.Argument(Path("."), help="the repository's root, which holds docs/schemas")) -> None:
    """Publish each new event version's schema under docs/schemas; check them all.

    What `make schemas` runs. A published version is never written again; one whose model changed shape is named, exit code 1."""
    if not (root / DIR).is_dir():
        # Anything else (a typo, an option it does not take) would be given every schema, published anew.
        typer.secho(f"{root}: no {DIR} directory here; give the repository's root", err=True, fg="red")
        raise typer.Exit(2)
    try:
        written = write_new(root)
    except OSError as exc:
        typer.secho(f"cannot publish under {root / DIR}: {exc.strerror or exc} ({exc.filename})", err=True, fg="red")
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(f"published {path.relative_to(root)}")
    problems = check(root)
    for problem in problems:
        typer.secho(problem, err=True, fg="red")
    raise typer.Exit(1 if problems else 0)


if __name__ == "__main__":
    cli()
