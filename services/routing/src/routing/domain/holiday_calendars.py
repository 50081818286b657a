"""Public-holiday calendars of the ``holidays`` package, loaded one country at a time.

The package's own entry points (``country_holidays``, ``list_supported_countries``) import the module of
every country it knows (``holidays.countries``' ``__init__`` imports ~250 of them): 8 MB of a routing
process to use the two or three calendars its reps name. Each country's module is read here on its own,
by the file name and class the package's registry gives for its code, under a module name of its own. A
country whose module builds on another's (a territory on its state's calendar) still imports that one.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path

import holidays
from holidays.holiday_base import HolidayBase
from holidays.registry import COUNTRIES

_COUNTRIES_DIR = Path(holidays.__file__).parent / "countries"
#: Every code the registry knows a country by (alpha-2, alpha-3 and aliases such as UK): its module and class.
_BY_CODE: dict[str, tuple[str, str]] = {
    code: (module, names[0]) for module, names in COUNTRIES.items() for code in names[1:]
}


@cache
def calendar(country: str) -> type[HolidayBase] | None:
    """The calendar class of ``country`` (``DE``, ``USA``, ``UK``), or None for a code the package lacks."""
    found = _BY_CODE.get(country)
    if found is None:
        return None
    module_name, class_name = found
    name = f"routing_holidays_{module_name}"
    spec = importlib.util.spec_from_file_location(name, _COUNTRIES_DIR / f"{module_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: code run in it may look itself up
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def subdivisions(country: str) -> tuple[str, ...] | None:
    """The subdivision codes ``country``'s calendar knows (``CA`` of ``US``), or None for an unknown country."""
    found = calendar(country)
    return None if found is None else tuple(found.subdivisions)


def holidays_of(country: str, subdivision: str | None, year: int) -> HolidayBase:
    """``country``'s (and ``subdivision``'s) public holidays of ``year``; ``country`` must be known."""
    found = calendar(country)
    if found is None:
        raise LookupError(f"no holiday calendar for {country!r}")
    return found(subdiv=subdivision, years=year)
