"""The routing files: read, versioned, and reloaded without a restart."""

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from routing.domain import acceptance_due
from routing.handlers import Routing
from routing.reference import RoutingFiles
from routing.sla import reload_reference

SHIPPED = Path(__file__).parents[1] / "src" / "routing" / "data"


@pytest.fixture
def files(tmp_path) -> RoutingFiles:
    for name in ("reps.yaml", "accounts.csv", "territories.yaml", "sla.yaml", "reasons.yaml"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    return RoutingFiles(*(tmp_path / n for n in ("reps.yaml", "accounts.csv", "territories.yaml", "sla.yaml",
                                                 "reasons.yaml")))


def test_the_same_files_have_the_same_version_and_any_change_makes_a_new_one(files):
    first = files.load()
    assert files.load().version == first.version
    stamp = files.stamp()
    files.sla.write_text(files.sla.read_text() + "\n# a comment is a change too\n")
    assert files.stamp() != stamp and files.load().version != first.version


def test_a_reload_puts_new_reps_in_force_and_bad_files_leave_the_old_ones(files):
    routing = Routing(files.load(), clock=lambda: None, files=files)  # type: ignore[arg-type, return-value]
    before = routing.reference.version
    reps = yaml.safe_load(files.reps.read_text())
    reps["reps"].append({"id": "new.rep", "name": "New Rep", "team": "apac", "timezone": "Asia/Seoul"})
    files.reps.write_text(yaml.safe_dump(reps))
    assert reload_reference(routing, trigger="test").version != before
    assert routing.data.rep("new.rep") is not None
    in_force = routing.reference
    files.reps.write_text("reps: [{id: broken}]")
    with pytest.raises(ValueError, match="reps"):
        reload_reference(routing, trigger="test")
    assert routing.reference is in_force


@pytest.mark.parametrize("too_long", ["999999999d", "366d", "8761h", "525601m", "31536001s", "99999999999999999999h"])
def test_an_sla_longer_than_a_year_is_refused_when_the_files_load_naming_the_grade_and_the_longest_allowed(
        files, too_long):
    files.sla.write_text(f"acceptance:\n  C: {too_long}\n")
    with pytest.raises(ValueError, match=rf"^{files.sla}: acceptance: grade C: '{too_long}' is longer than the longest "
                                         r"deadline allowed, 365d \(8760h, 525600m or 31536000s\)"):
        files.load()


@pytest.mark.parametrize("longest", ["365d", "8760h", "525600m", "31536000s"])
def test_the_longest_sla_allowed_gives_every_rep_a_deadline(files, longest):
    files.sla.write_text(f"acceptance:\n  C: {longest}\n")
    data = files.load().data
    start = datetime(2027, 3, 26, 15, 0, tzinfo=UTC)
    assert all(acceptance_due("C", rep.id, data, start) > start for rep in data.reps)


@pytest.mark.parametrize(("name", "repeat"), [
    ("reps", "teams:\n  apac: {when_nobody_available: wait}\n"),
    ("territories", "unknown_size_segment: enterprise\n"),
    ("sla", "max_reassignments: 5\n"),
    ("reasons", "lost:\n  price: Lost on price\n"),
])
def test_a_key_given_twice_in_a_routing_file_is_refused_naming_the_file_the_key_and_its_line(files, name, repeat):
    """A second teams: in the reps file replaced every overflow policy of the first without a word."""
    path = getattr(files, name)
    shipped = path.read_text()
    key = repeat.split(":")[0]
    first = next(n for n, line in enumerate(shipped.splitlines(), 1) if line.startswith(f"{key}:"))
    path.write_text(shipped.rstrip("\n") + "\n" + repeat)
    again = len(shipped.rstrip("\n").splitlines()) + 1
    with pytest.raises(ValueError, match=rf"^{path}:{again}:1: '{key}' is given again \(first on line {first}\)"):
        files.load()


def test_an_account_row_missing_its_owner_is_refused_naming_the_line_and_the_column(files):
    files.accounts.write_text(files.accounts.read_text() + "acme.com,Acme\n")
    lines = len(files.accounts.read_text().splitlines())
    with pytest.raises(ValueError, match=rf"accounts\.csv:{lines}: missing the owner column"):
        files.load()


def test_an_account_row_with_an_unquoted_comma_in_its_name_is_refused_naming_its_line(files):
    """Its owner was " SE", refused as "accounts name owners who are not reps: ['SE']", which named no line."""
    files.accounts.write_text(files.accounts.read_text().replace("SAP SE", "SAP, SE"))
    with pytest.raises(ValueError, match=rf'^{files.accounts}:3: value 4 \(\'tom\.berg\'\) is under no column the '
                                         r'header names \(a value holding a comma is quoted: "Acme, Inc\."\)$'):
        files.load()


def test_an_accounts_column_routing_does_not_read_is_refused_naming_the_columns_it_does(files):
    files.accounts.write_text(files.accounts.read_text().replace("domain,name,owner", "domain,name,owner,region"))
    with pytest.raises(ValueError, match=rf"^{files.accounts}: unknown columns \['region'\] in the header \(known: "
                                         r"domain, name, owner\)$"):
        files.load()


def test_a_reload_of_an_account_row_missing_its_owner_keeps_the_data_in_force(files):
    routing = Routing(files.load(), clock=lambda: None, files=files)  # type: ignore[arg-type, return-value]
    in_force = routing.reference
    files.accounts.write_text(files.accounts.read_text() + "acme.com\n")
    with pytest.raises(ValueError, match=r"accounts\.csv:\d+: missing the name column"):
        reload_reference(routing, trigger="test")
    assert routing.reference is in_force


def test_data_of_a_shape_no_check_foresaw_fails_a_reload_as_invalid_files_not_as_a_crash(files, monkeypatch):
    """The file watch and the reload API catch ValueError: anything else stopped the watch's round with a
    generic failure and answered the reload API with a 500."""
    routing = Routing(files.load(), clock=lambda: None, files=files)  # type: ignore[arg-type, return-value]
    in_force = routing.reference

    def unforeseen(raw):
        raise TypeError("unhashable type: 'list'")

    monkeypatch.setattr("routing.reference.parse_routing_data", unforeseen)
    with pytest.raises(ValueError, match=r"routing reference data is invalid \(TypeError: unhashable type: 'list'\)"
                                         r" \(files: reps .*reps\.yaml"):
        reload_reference(routing, trigger="test")
    assert routing.reference is in_force


@pytest.mark.parametrize(("before", "after", "said"), [
    ("weight: 2,", "weight: heavy,", 'rep "lena.fischer" (the 1st): weight: Input should be a valid integer'),
    ("{id: tom.berg, ", "{", "the 2nd rep: id: is required"),
    ('start: "09:00", end: "17:00"}\nteams', 'start: "9am", end: "17:00"}\nteams',
     "working_hours.start: '9am' is not a time of day like 09:00"),
    ("sat, sun], start", "sat, sonntag], start", 'rep "alex.moreau" (the 11th): working_hours.days (the 7th): Input '
                                                 "should be 'mon', 'tue', 'wed', 'thu', 'fri', 'sat' or 'sun'"),
])
def test_a_wrong_reps_file_is_refused_naming_it_alone_and_a_rep_by_their_id_and_place_in_it(files, before, after, said):
    """It named all five files, and a rep by pydantic's index from 0 (reps.0.weight), which no one finds in a file."""
    files.reps.write_text(files.reps.read_text().replace(before, after, 1))
    with pytest.raises(ValueError) as refused:
        files.load()
    assert str(refused.value) == f"{files.reps}: {said}"


def test_an_account_owned_by_no_rep_is_refused_naming_its_line_and_the_rep_meant(files):
    """It said "accounts name owners who are not reps: ['tom.berq']", which named no line."""
    files.accounts.write_text(files.accounts.read_text().replace("SAP SE,tom.berg", "SAP SE,tom.berq"))
    with pytest.raises(ValueError) as refused:
        files.load()
    assert str(refused.value) == f"{files.accounts}:3: owner: 'tom.berq' is no rep's id (did you mean tom.berg?)"


def test_problems_in_two_files_are_each_said_with_their_own_file(files):
    files.reps.write_text(files.reps.read_text().replace("weight: 2,", "weight: true,", 1))
    files.sla.write_text(files.sla.read_text().replace("B: 1h", "B: 1hour"))
    with pytest.raises(ValueError) as refused:
        files.load()
    assert str(refused.value) == (f'{files.reps}: rep "lena.fischer" (the 1st): weight: true reads as yes or no, not '
                                  f"a whole number: write a whole number, unquoted; {files.sla}: acceptance: grade B: "
                                  "'1hour' is not a duration like 30s, 15m, 1h or 1d")


def test_a_misspelt_key_at_the_top_of_the_reps_file_is_refused_naming_it_and_the_known_ones(files):
    """``team:`` for ``teams:`` dropped every overflow policy without a word."""
    files.reps.write_text(files.reps.read_text().replace("\nteams:", "\nteam:"))
    with pytest.raises(ValueError, match=r"reps\.yaml: unknown keys \['team'\] \(known: reps, teams, working_hours\)"):
        files.load()


@pytest.mark.parametrize(("file", "before", "after", "message"), [
    ("reps", "weight: 2,", "wieght: 2,", r'rep "lena\.fischer" \(the 1st\): wieght: unknown key \(known: '
                                         r"active, capacity, email, holidays, id, name, team, timezone, weight, "
                                         r"working_hours\)"),
    ("reps", 'start: "09:00"', 'begin: "09:00"', r"working_hours\.begin: unknown key \(known: days, end, start\)"),
    ("reps", "{when_nobody_available: wait}", "{when_nobody: wait}",
     r"teams\.global-inbound\.when_nobody: unknown key \(known: overflow_to, when_nobody_available\)"),
    ("territories", "min_employees: 1000", "min_employees: 1000, size: big",
     r'segment "enterprise" \(the 1st\): size: unknown key \(known: min_employees, name\)'),
    ("reasons", "recycle: false}", "recyle: false}",
     r"rejected\.bad-contact\.recyle: unknown key \(known: recycle, text\)"),
])
def test_a_misspelt_key_inside_the_routing_files_is_refused_with_the_known_ones(files, file, before, after,
                                                                                message):
    path = getattr(files, file)
    path.write_text(path.read_text().replace(before, after, 1))
    with pytest.raises(ValueError, match=rf"^{path}: {message}$"):
        files.load()


def test_the_shipped_reasons_keep_leads_rejected_as_noise_in_nurture_and_recycle_the_rest(files):
    reasons = files.load().data.reasons
    assert {code for code in reasons.rejected if not reasons.recycles(code)} == {
        "spam", "competitor", "student-or-job-seeker", "bad-contact", "duplicate"}
    assert reasons.recycles("not-a-fit") and reasons.recycles("no-budget")
    assert reasons.rejected["spam"].text == "Spam or a test submission"


@pytest.mark.parametrize(("entry", "message"), [
    ("spam: {recycle: false}", r"rejected\.spam\.text: is required"),
    ("spam:", r"rejected\.spam: expected the code's text, or \{text: \.\.\., recycle: false\}"),
    ("spam: {text: Spam, recycle: sometimes}", r"rejected\.spam\.recycle: Input should be a valid boolean"),
])
def test_a_rejection_reason_written_wrong_is_refused_naming_the_code_and_what_it_needs(files, entry, message):
    files.reasons.write_text(f"rejected:\n  not-a-fit: Not our ICP\n  {entry}\n")
    with pytest.raises(ValueError, match=rf"^{files.reasons}: {message}"):
        files.load()


def test_an_accounts_file_a_spreadsheet_saved_with_a_byte_order_mark_is_read(files):
    files.accounts.write_bytes(files.accounts.read_text().encode("utf-8-sig"))
    assert files.load().data.accounts


def test_an_accounts_file_in_another_encoding_than_utf8_is_refused_not_read_with_its_letters_replaced(files):
    files.accounts.write_bytes(files.accounts.read_text().encode() + "müller.de,Müller GmbH,ana\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"ROUTING_ACCOUNTS_FILE: {files.accounts} is not UTF-8 \(byte \d+\); "
                                         "save it as UTF-8"):
        files.load()


def test_checking_country_codes_loads_no_country_calendar_a_rep_does_not_name():
    """holidays' list of countries imports all 279 calendars: 8 MB more in every routing process."""
    import subprocess
    import sys

    loaded = subprocess.run([sys.executable, "-c", "import sys, routing.app, routing.domain.reference; "
                             "print(sum(m.startswith('holidays.countries.') for m in sys.modules))"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "0"


@pytest.mark.parametrize("reps", ["", "reps: []\n", "teams: {}\n", "reps:\n"], ids=["empty", "none", "no-key", "null"])
def test_a_reps_file_that_lists_no_reps_is_refused_saying_so_naming_the_file(files, reps):
    """It was refused for the accounts' owners ("body: accounts name owners who are not reps: [...]"): neither
    that the file lists nobody, nor, from a reference file, what "body" is."""
    files.reps.write_text(reps)
    with pytest.raises(ValueError) as refused:
        files.load()
    assert str(refused.value) == f"{files.reps}: the reps file lists no reps (a list under reps:, at least one)"


def test_a_rep_id_given_twice_is_refused_naming_the_file_and_both_reps_by_their_place(files):
    """Said as "rep ids used twice" with every routing file listed, it named neither the file nor the reps."""
    reps = yaml.safe_load(files.reps.read_text())
    reps["reps"].append(dict(reps["reps"][0]))
    files.reps.write_text(yaml.safe_dump(reps))
    with pytest.raises(ValueError) as refused:
        files.load()
    assert str(refused.value) == (f"{files.reps}: rep \"lena.fischer\" (the 13th): id: 'lena.fischer' is the 1st "
                                  "rep's id too: give each rep an id of their own")


@pytest.mark.parametrize(("written", "alone"), [
    ("www.acme.com", "acme.com"), ("https://acme.com", "acme.com"), ("@acme.com", "acme.com"),
    ("acme.com.", "acme.com"), ("https://www.acme.com/about", "acme.com")])
def test_an_account_domain_no_address_ends_in_is_refused_naming_the_line_and_the_domain_to_write(
        files, written, alone):
    """Enrichment gives a lead's company domain bare: www.acme.com matched none, and Acme's leads went to rotation."""
    files.accounts.write_text(files.accounts.read_text() + f"{written},Acme,tom.berg\n")
    line = len(files.accounts.read_text().splitlines())
    with pytest.raises(ValueError, match=rf"accounts\.csv:{line}: domain '{re.escape(written)}' is not what follows "
                                         rf"the @ of an address: write the domain alone: {re.escape(alone)}$"):
        files.load()


@pytest.mark.parametrize("written", ["", "acme", "exa_mple.com"])
def test_an_account_domain_that_is_no_domain_is_refused_naming_the_line(files, written):
    files.accounts.write_text(files.accounts.read_text() + f"{written},Acme,tom.berg\n")
    line = len(files.accounts.read_text().splitlines())
    with pytest.raises(ValueError, match=rf"accounts\.csv:{line}: (empty domain|domain '{written}' is not a domain)"):
        files.load()


@pytest.mark.parametrize(("first", "again"), [("siemens.com", "SIEMENS.com"), ("müller.de", "xn--mller-kva.de")])
def test_an_account_listed_twice_in_either_spelling_is_refused_naming_both_lines(files, first, again):
    """The first row won without a word: the second owner never got the account's leads."""
    text = files.accounts.read_text()
    if first not in text:
        text += f"{first},Müller GmbH,lena.fischer\n"
    first_line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith(f"{first},"))
    files.accounts.write_text(text + f"{again},Again,tom.berg\n")
    line = len(files.accounts.read_text().splitlines())
    with pytest.raises(ValueError, match=rf"accounts\.csv:{line}: {again.lower()} is listed already on line "
                                         rf"{first_line}"):
        files.load()


def test_an_internationalised_account_domain_is_taken_in_either_spelling(files):
    files.accounts.write_text(files.accounts.read_text() + "müller.de,Müller GmbH,lena.fischer\n")
    assert files.load().data.account("xn--mller-kva.de").name == "Müller GmbH"


def test_a_territory_rule_after_one_of_the_same_or_a_wider_region_and_segment_is_refused_naming_both(files):
    """Swapped, the shipped first two rules sent every emea enterprise lead to emea-commercial."""
    text = files.territories.read_text()
    enterprise = "  - {team: emea-enterprise, region: emea, segment: enterprise}\n"
    commercial = "  - {team: emea-commercial, region: emea}\n"
    files.territories.write_text(text.replace(enterprise + commercial, commercial + enterprise))
    with pytest.raises(ValueError, match=rf'^{files.territories}: team rule "emea-enterprise" \(the 2nd\): can never '
                                         r"apply \(emea-enterprise: emea, enterprise\): the 1st \(emea-commercial: "
                                         r"emea, any segment\) comes first"):
        files.load()


def test_a_territory_rule_after_a_narrower_one_is_taken(files):
    files.territories.write_text(files.territories.read_text().replace(
        "  - {team: apac, region: apac}\n", "  - {team: apac, region: apac}\n  - {team: apac}\n"))
    assert files.load().data.territories.teams[-1].region is None


def test_a_country_in_two_regions_is_refused_naming_both(files):
    files.territories.write_text(files.territories.read_text().replace("apac: [AU,", "apac: [DE, AU,"))
    with pytest.raises(ValueError, match=rf"^{files.territories}: regions: DE is listed in both emea and apac"):
        files.load()


@pytest.mark.parametrize(("file", "before", "after", "where"), [
    ("reps", "weight: 2,", "weight: true,", r'rep "lena\.fischer" \(the 1st\): weight'),
    ("reps", "capacity: 20}", "capacity: true}", r'rep "lena\.fischer" \(the 1st\): capacity'),
    ("sla", "max_reassignments: 2", "max_reassignments: true", r"max_reassignments"),
    ("territories", "min_employees: 1000", "min_employees: true", r'segment "enterprise" \(the 1st\): min_employees'),
])
def test_a_yes_or_no_where_a_whole_number_is_meant_is_refused_not_read_as_1(files, file, before, after, where):
    path = getattr(files, file)
    path.write_text(path.read_text().replace(before, after, 1))
    with pytest.raises(ValueError, match=rf"^{path}: {where}: true reads as yes or no, not a whole number: write a "
                                         "whole number, unquoted"):
        files.load()


@pytest.mark.parametrize(("before", "after", "said"), [
    # A folder of the zone database: IsADirectoryError, not a ValueError, stopped routing naming neither the file
    # nor the rep, and a reload answered 500.
    ("timezone: Europe/Berlin,", "timezone: US,", r"timezone: unknown time zone 'US'"),
    ("timezone: Europe/Berlin,", "timezone: Europe,", r"timezone: unknown time zone 'Europe'"),
    # Postgres counts a rep's held leads as an integer: past it every routing batch reaching the rep failed.
    ("capacity: 20}", "capacity: 9999999999}", r"capacity: Input should be less than or equal to 100000"),
    ("name: Lena Fischer,", "name: ' ',", r"name: is blank"),
])
def test_a_rep_setting_that_would_fail_later_is_refused_naming_the_file_and_the_rep(files, before, after, said):
    files.reps.write_text(files.reps.read_text().replace(before, after, 1))
    with pytest.raises(ValueError, match=rf'^{files.reps}: rep "lena\.fischer" \(the 1st\): {said}'):
        files.load()


@pytest.mark.parametrize(("file", "before", "after", "said"), [
    # A company's segment is the largest it reaches: of two at one size one never is, and its team rule never fires.
    ("territories", "{name: mid-market, min_employees: 200}", "{name: mid-market, min_employees: 1000}",
     r"'enterprise' and 'mid-market' both start at 1000 employees"),
    ("territories", "{name: mid-market, min_employees: 200}", "{name: enterprise, min_employees: 200}",
     r"'enterprise' is listed twice"),
    ("territories", "apac: [AU,", "apac: []\n  apac-old: [AU,", r"apac: lists no country"),
    ("reps", "apac: {when_nobody_available: overflow, overflow_to: global-inbound}",
     "apac: {when_nobody_available: wait, overflow_to: global-inbound}", r"is used only with when_nobody_available"),
    ("reps", "apac: {when_nobody_available: overflow, overflow_to: global-inbound}",
     "apac: {when_nobody_available: overflow, overflow_to: apac}", r"overflows to itself"),
])
def test_a_territory_or_team_policy_that_could_never_take_effect_is_refused(files, file, before, after, said):
    path = getattr(files, file)
    text = path.read_text()
    assert before in text
    path.write_text(text.replace(before, after, 1))
    with pytest.raises(ValueError, match=said):
        files.load()


@pytest.mark.parametrize("rep_id", ["queue:apac", "sam/taylor", " sam.taylor ", ""])
def test_a_rep_id_no_path_or_event_can_carry_is_refused(files, rep_id):
    """queue:apac is the owner id of apac's queue; a / makes /v1/reps/{rep_id} unreachable."""
    files.reps.write_text(files.reps.read_text().replace("id: lena.fischer,", f"id: '{rep_id}',", 1))
    with pytest.raises(ValueError, match=r"id: .* is no rep id: 1 to 100 letters"):
        files.load()


def test_a_reasons_file_with_no_rejection_code_is_refused_not_every_rejection_later(files):
    files.reasons.write_text("# nothing yet\n")
    with pytest.raises(ValueError, match=rf"^{files.reasons}: rejected: no code a rejection may give"):
        files.load()


def test_an_account_without_a_name_is_refused(files):
    files.accounts.write_text(files.accounts.read_text().replace("siemens.com,Siemens AG,", "siemens.com, ,", 1))
    with pytest.raises(ValueError, match=r"is blank: give the account's name"):
        files.load()


TEAMS = "amer-commercial, amer-enterprise, apac, emea-commercial, emea-enterprise, global-inbound"


@pytest.mark.parametrize(("rep", "place", "team", "meant"), [
    ("hiro.sato", "9th", "apak", "apac"),  # an account's owner: their team gets their accounts' leads, so it passed
    ("chloe.tan", "10th", "apak", "apac"),
    ("lena.fischer", "1st", "emea-enterpirse", "emea-enterprise"),
])
def test_an_active_rep_on_a_team_the_files_name_nowhere_else_is_refused_naming_the_team_meant_and_the_teams(
        files, rep, place, team, meant):
    """Hiro owns Atlassian: on apak, a typo for apac, he loaded, and left apac's rotation without a word."""
    text = files.reps.read_text()
    line = next(row for row in text.splitlines() if f"id: {rep}," in row)
    files.reps.write_text(text.replace(line, re.sub(r"team: [\w-]+", f"team: {team}", line)))
    with pytest.raises(ValueError) as refused:
        files.load()
    assert str(refused.value) == (f'{files.reps}: rep "{rep}" (the {place}): team: \'{team}\' is no team the files '
                                  f"name (did you mean {meant}?): no territory rule, default_team, overflow_to or "
                                  f"teams: entry names it (the teams: {TEAMS}); a team of account owners of its own "
                                  "is named under teams:")


def test_an_inactive_rep_on_a_team_the_files_no_longer_name_is_taken(files):
    """A team may be removed while its former reps stay on file, inactive: its open leads are the orphan watch's."""
    files.reps.write_text(files.reps.read_text().replace("team: global-inbound, weight: 1, active: false",
                                                         "team: emea-inbound, weight: 1, active: false"))
    assert files.load().data.rep("noah.wright").team == "emea-inbound"


def key_rep(files, teams: str = "") -> None:
    """The shipped files with key.rep on a team of their own, key-accounts, owning acme.com; ``teams`` added under
    teams:."""
    reps = yaml.safe_load(files.reps.read_text())
    reps["reps"].append({"id": "key.rep", "name": "Key Rep", "team": "key-accounts"})
    reps["teams"].update(yaml.safe_load(teams) or {})
    files.reps.write_text(yaml.safe_dump(reps))
    files.accounts.write_text(files.accounts.read_text() + "acme.com,Acme,key.rep\n")


def test_a_team_of_account_owners_of_its_own_named_under_teams_is_taken(files):
    key_rep(files, "key-accounts: {when_nobody_available: overflow, overflow_to: global-inbound}")
    data = files.load().data
    assert data.account("acme.com").owner == "key.rep" and data.policy_of("key-accounts").overflow_to


def test_a_team_of_account_owners_named_nowhere_else_is_refused_saying_to_name_it_under_teams(files):
    key_rep(files)
    with pytest.raises(ValueError, match=rf'^{files.reps}: rep "key\.rep" \(the 13th\): team: \'key-accounts\' is no '
                                         r"team the files name: .*; a team of account owners of its own is named "
                                         "under teams:$"):
        files.load()


def test_an_active_rep_on_a_team_named_under_teams_alone_who_owns_no_account_is_refused_as_getting_no_leads(files):
    key_rep(files, "key-accounts: {when_nobody_available: wait}")
    files.accounts.write_text(files.accounts.read_text().replace("acme.com,Acme,key.rep\n", ""))
    with pytest.raises(ValueError, match=rf'^{files.reps}: rep "key\.rep" \(the 13th\): team: \'key-accounts\' gets '
                                         r"no leads: no territory rule, default_team, overflow_to or account sends it "
                                         r"any, and the rep owns no account \(misspelt\? the teams leads go to: "
                                         rf"{TEAMS}\)$"):
        files.load()


def test_a_reps_working_hours_given_in_part_keep_the_files_default_for_the_rest(files):
    """Given days alone, a rep was on 09:00-17:00 (the built-in hours) while the file said 08:00-18:00."""
    files.reps.write_text(files.reps.read_text()
                          .replace('start: "09:00", end: "17:00"}\nteams', 'start: "08:00", end: "18:00"}\nteams')
                          .replace("holidays: SE,", "holidays: SE, working_hours: {days: [mon, tue, wed]},"))
    data = files.load().data
    hours = data.hours_of(data.rep("tom.berg"))
    assert (hours.days, hours.start, hours.end) == (["mon", "tue", "wed"], "08:00", "18:00")


def test_a_reps_working_hours_given_in_part_are_checked_with_the_files_default(files):
    files.reps.write_text(files.reps.read_text()
                          .replace('start: "09:00", end: "17:00"}\nteams', 'start: "08:00", end: "18:00"}\nteams')
                          .replace("holidays: SE,", 'holidays: SE, working_hours: {end: "08:00"},'))
    with pytest.raises(ValueError, match=rf'^{files.reps}: rep "tom\.berg" \(the 2nd\): working_hours: .*start and '
                                         r"end at the same time \(08:00\)"):
        files.load()


@pytest.mark.parametrize(("written", "kept"), [("DE-Augsburg", "DE-Augsburg"), ("de-augsburg", "DE-Augsburg"),
                                               ("us-ca", "US-CA"), ("fr-zone a", "FR-Zone A"), ("se", "SE")])
def test_a_holiday_calendar_is_matched_whatever_its_case_and_kept_as_the_holidays_package_spells_it(
        files, written, kept):
    """DE-Augsburg was refused as "DE has no subdivision 'AUGSBURG' (known: ..., Augsburg)"."""
    files.reps.write_text(files.reps.read_text().replace("holidays: SE,", f"holidays: {written},"))
    data = files.load().data
    assert data.rep("tom.berg").holidays == kept
    assert acceptance_due("C", "tom.berg", data, datetime(2026, 8, 7, 15, 0, tzinfo=UTC))


@pytest.mark.parametrize(("written", "quoted"), [("17:00", "17:00"), ("9:00", "09:00"), ("24:00", "24:00")])
def test_an_unquoted_time_yaml_reads_as_a_number_is_refused_saying_to_quote_it(files, written, quoted):
    files.reps.write_text(files.reps.read_text().replace('end: "17:00"}\nteams', f"end: {written}}}\nteams"))
    with pytest.raises(ValueError, match=rf'working_hours\.end: \d+ is how YAML reads {written} unquoted \(a number '
                                         rf'in base 60\): quote it, "{quoted}"'):
        files.load()


@pytest.mark.parametrize("sla", ["", "# every deadline, gone\n", "max_reassignments: 2\n"])
def test_an_sla_file_with_no_acceptance_is_refused_naming_the_file(files, sla):
    """It loaded, and turned every acceptance deadline off without a word."""
    files.sla.write_text(sla)
    with pytest.raises(ValueError, match=rf"^{files.sla}: the SLA file gives no acceptance"):
        files.load()


def test_an_sla_file_that_turns_the_deadlines_off_on_purpose_is_taken(files):
    files.sla.write_text("acceptance: {}\n")
    assert files.load().data.sla.acceptance == {}


def test_routing_on_the_bundled_sample_team_says_so_at_start_naming_what_to_set(tmp_path):
    """A first deploy routed real leads to the sample's fictional reps, and nothing said so."""
    import structlog

    from routing.app import create_app
    from routing.settings import RoutingSettings

    for name in ("reps.yaml", "accounts.csv"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    with structlog.testing.capture_logs() as lines:
        create_app(RoutingSettings())
        create_app(RoutingSettings(reps_file=tmp_path / "reps.yaml", accounts_file=tmp_path / "accounts.csv"))
        create_app(RoutingSettings(reps_file=tmp_path / "reps.yaml", accounts_file=tmp_path / "accounts.csv",
                                   territories_file=SHIPPED / "territories.yaml"))
    said = [line["unset"] for line in lines if line["event"].startswith("routing to the bundled sample team")]
    assert said == [["ROUTING_REPS_FILE", "ROUTING_ACCOUNTS_FILE", "ROUTING_TERRITORIES_FILE"],
                    ["ROUTING_TERRITORIES_FILE"]]


def test_the_version_of_the_routing_files_in_force_is_exported_from_the_start():
    """routing_data_info named a version only after a reload that changed the files: a fresh process (every
    replica after a deploy) exported none, so no one could tell which files each ran."""
    from prometheus_client import REGISTRY

    from routing.app import create_app
    from routing.settings import RoutingSettings

    settings = RoutingSettings()
    create_app(settings)
    version = settings.files.load().version
    assert REGISTRY.get_sample_value("routing_data_info", {"version": version}) == 1.0
