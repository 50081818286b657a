"""A reference file that cannot be used is named with its setting (or, read, the place in it) and the reason."""

import re

import pytest
import yaml

from leadpipe_common.files import RepeatedKey, UniqueKeyLoader, parse_csv, parse_yaml, read_text


def test_a_missing_file_or_a_directory_is_named_with_its_setting(tmp_path):
    with pytest.raises(ValueError, match=rf"^SCORING_RULES_FILE: cannot read {tmp_path}/rules.yaml: No such file"):
        read_text(tmp_path / "rules.yaml", "SCORING_RULES_FILE")
    with pytest.raises(ValueError, match=rf"^SCORING_RULES_FILE: cannot read {tmp_path}: Is a directory$"):
        read_text(tmp_path, "SCORING_RULES_FILE")


def test_a_file_that_is_not_utf8_is_named_with_its_setting_and_where_it_is_not(tmp_path):
    """It said only "'utf-8' codec can't decode byte 0xff in position 3": neither which file nor which setting."""
    latin = tmp_path / "forms.yaml"
    latin.write_bytes("id: m\xfcller".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^CAPTURE_FORMS_FILE: {latin} is not UTF-8 \(byte 5\); save it as UTF-8$"):
        read_text(latin, "CAPTURE_FORMS_FILE")


def test_a_spreadsheets_byte_order_mark_is_no_part_of_the_text(tmp_path):
    csv = tmp_path / "accounts.csv"
    csv.write_bytes(b"\xef\xbb\xbfdomain,name\n")
    assert read_text(csv, "ROUTING_ACCOUNTS_FILE") == "domain,name\n"


def test_a_key_given_twice_in_one_mapping_is_refused_naming_the_file_the_key_and_both_lines(tmp_path):
    """YAML keeps the last and drops the first: a second secrets: during a rotation dropped the old secret."""
    path = tmp_path / "subscriptions.yaml"
    text = "subscriptions:\n  - id: crm\n    secrets: [whsec_old]\n    secrets: [whsec_new]\n"
    with pytest.raises(ValueError, match=rf"^{path}:4:5: 'secrets' is given again \(first on line 3\): YAML would "
                                         "keep only the last and drop the first without a word; give it once$"):
        parse_yaml(text, path)


def test_the_loader_alone_refuses_a_repeated_key_naming_its_line_and_column():
    with pytest.raises(RepeatedKey, match=r"^line 3, column 1: 'fit' is given again \(first on line 1\)"):
        yaml.load("fit: []\nintent: []\nfit: []\n", Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader


@pytest.mark.parametrize("written, number", [("0042", 34), ("0x1F", 31), ("1_000", 1000), ("1:30", 90), ("+7", 7)])
def test_a_key_yaml_reads_as_another_number_than_written_is_refused_naming_it(tmp_path, written, number):
    """YAML 1.1 reads 0042 as octal: a form listed as 0042 was form 34, and posts to /v1/forms/0042 unlisted's."""
    said = f"{tmp_path}/forms.yaml:2:3: YAML reads the key '{written}' as the number {number}: quote it ('{written}') "
    with pytest.raises(ValueError, match=f"^{re.escape(said)}if it is a name$"):
        parse_yaml(f"forms:\n  {written}: {{}}\n", tmp_path / "forms.yaml")


def test_a_key_of_digits_written_as_yaml_reads_it_is_a_number_as_before(tmp_path):
    assert parse_yaml("forms:\n  2024: {}\n  -1: {}\n  '0042': {}\n", tmp_path / "forms.yaml") == {
        "forms": {2024: {}, -1: {}, "0042": {}}}


def test_two_spellings_of_one_key_are_a_repeat_and_the_first_is_named_as_it_was_written(tmp_path):
    with pytest.raises(ValueError, match=r":2:1: 'true' is given again \(first on line 1, as 'yes'\)"):
        parse_yaml("yes: 1\ntrue: 2\n", tmp_path / "forms.yaml")


def test_the_same_key_in_different_mappings_and_a_merge_overridden_beside_it_are_no_repeats(tmp_path):
    text = "fit:\n  - {rule: A, points: 1}\n  - {rule: B, points: 2}\nbase: &b {x: 1, y: 1}\nteam: {<<: *b, x: 2}\n"
    assert parse_yaml(text, tmp_path / "rules.yaml") == {
        "fit": [{"rule": "A", "points": 1}, {"rule": "B", "points": 2}], "base": {"x": 1, "y": 1},
        "team": {"x": 2, "y": 1}}


def test_text_that_is_not_yaml_is_refused_in_one_line_naming_the_file_and_where(tmp_path):
    with pytest.raises(ValueError) as refused:
        parse_yaml("acceptance:\n  A: [15m\n", tmp_path / "sla.yaml")
    said = str(refused.value)
    assert said.startswith(f"{tmp_path}/sla.yaml:3:1: not valid YAML: while parsing a flow sequence; expected ")
    assert "\n" not in said and "<unicode string>" not in said


@pytest.mark.parametrize("text, why", [
    ("version: 2026-02-30\n", "day is out of range for month"),  # the README's unquoted date, mistyped
    ("subscriptions: !!bool maybe\n", "'maybe'"),
    ("at: !!timestamp abc\n", "not valid YAML"),
])
def test_a_value_yaml_cannot_build_is_refused_naming_the_file_not_raised_bare(tmp_path, text, why):
    with pytest.raises(ValueError, match=rf"^{tmp_path}/rules.yaml: not valid YAML: .*") as refused:
        parse_yaml(text, tmp_path / "rules.yaml")
    assert why in str(refused.value)


def test_an_anchored_mapping_merging_another_and_overriding_it_is_no_repeat_when_met_again(tmp_path):
    """Checked after PyYAML had flattened it (its merge's keys among its own, in place), the second sight of
    such a mapping through an alias seemed to give its overridden key twice."""
    text = ("defaults: &d {when_nobody_available: wait, max: 1}\n"
            "teams:\n  emea: {<<: &e {<<: *d, max: 2}, x: 1}\n  apac: {copy: *e}\n")
    assert parse_yaml(text, tmp_path / "teams.yaml")["teams"]["apac"] == {
        "copy": {"when_nobody_available": "wait", "max": 2}}


def test_two_merges_in_one_mapping_are_a_repeat(tmp_path):
    """The later would win, without a word; a list of merges (<<: [*a, *b]) says which wins."""
    with pytest.raises(ValueError, match=r"teams.yaml:3:19: '<<' is given again \(first on line 3\)"):
        parse_yaml("a: &a {x: 1}\nb: &b {x: 2}\nc: {<<: *a, y: 0, <<: *b}\n", tmp_path / "teams.yaml")


COMPANY_COLUMNS = ("domain", "name", "industry", "employee_count", "country")


def test_each_csv_row_comes_with_the_line_an_editor_shows_it_on_and_a_value_of_every_column(tmp_path):
    text = 'domain,name,country\nacme.com,Acme,US\n\n"globex.com","Globex,\nInc.",DE\nsap.com,SAP\n'
    assert parse_csv(text, tmp_path / "companies.csv", COMPANY_COLUMNS, required=("domain", "name")) == [
        (2, {"domain": "acme.com", "name": "Acme", "industry": "", "employee_count": "", "country": "US"}),
        (5, {"domain": "globex.com", "name": "Globex,\nInc.", "industry": "", "employee_count": "", "country": "DE"}),
        (6, {"domain": "sap.com", "name": "SAP", "industry": "", "employee_count": "", "country": ""})]


@pytest.mark.parametrize(("header", "message"), [
    ("domain,name,size", r"unknown columns \['size'\] in the header \(known: domain, name, industry, employee_count, "
                         r"country\)$"),
    ("domain,name,Country", r"unknown columns \['Country'\] in the header \(known: .*\); did you mean country for "
                            r"'Country'\? \(column names are matched as written, case and spaces too\)$"),
    ("domain, name", r"unknown columns \[' name'\] in the header \(known: .*\); did you mean name for ' name'\?"),
    ("domain,name,industy", r"unknown columns \['industy'\] .*; did you mean industry for 'industy'\?$"),
])
def test_a_csv_column_the_file_does_not_know_is_refused_naming_the_known_ones_and_the_one_meant(
        tmp_path, header, message):
    """Its values were dropped without a word: a companies.csv saying Country or size had every company's
    country and head count unknown, which changed scoring and routing."""
    path = tmp_path / "companies.csv"
    with pytest.raises(ValueError, match=rf"^{path}: {message}"):
        parse_csv(f"{header}\nacme.com,Acme,DE\n", path, COMPANY_COLUMNS, required=("domain", "name"))


def test_a_csv_column_named_twice_in_the_header_is_refused(tmp_path):
    path = tmp_path / "accounts.csv"
    with pytest.raises(ValueError, match=rf"^{path}: the header names 'owner' twice: the values of one would be "
                                         "dropped$"):
        parse_csv("domain,name,owner,owner\n", path, ("domain", "name", "owner"), required=("domain", "name"))


@pytest.mark.parametrize(("header", "rows", "value"), [
    ("domain,name,owner", "siemens.com,Siemens AG,lena.fischer\nsap.com,SAP, SE,tom.berg", r"value 4 \('tom.berg'\)"),
    ("domain,name,owner,", "siemens.com,Siemens AG,lena.fischer,\nsap.com,SAP, SE,tom.berg",
     r"value 4 \('tom.berg'\)"),
    ("domain,,name,owner", "siemens.com,,Siemens AG,lena.fischer\nsap.com,x,SAP SE,tom.berg", r"value 2 \('x'\)"),
])
def test_a_csv_value_under_no_column_of_the_header_is_refused_naming_its_line(tmp_path, header, rows, value):
    """An unquoted comma in a value shifts the rest: SAP, SE made " SE" the owner and dropped tom.berg."""
    path = tmp_path / "accounts.csv"
    with pytest.raises(ValueError, match=rf'^{path}:3: {value} is under no column the header names \(a value holding '
                                         r'a comma is quoted: "Acme, Inc\."\)$'):
        parse_csv(f"{header}\n{rows}\n", path, ("domain", "name", "owner"), required=("domain", "name", "owner"))


def test_empty_values_under_no_column_as_a_spreadsheet_writes_them_are_taken(tmp_path):
    rows = parse_csv("domain,name,owner,,\nsap.com,SAP SE,tom.berg,,\nmonzo.com,Monzo,ana, \n",
                     tmp_path / "accounts.csv", ("domain", "name", "owner"), required=("domain", "name", "owner"))
    assert [row["owner"] for _, row in rows] == ["tom.berg", "ana"]


def test_a_csv_file_or_row_without_a_required_column_is_refused_naming_it(tmp_path):
    path = tmp_path / "accounts.csv"
    with pytest.raises(ValueError, match=rf"^{path}: missing columns \['owner'\]$"):
        parse_csv("domain,name\n", path, ("domain", "name", "owner"), required=("domain", "name", "owner"))
    with pytest.raises(ValueError, match=rf"^{path}:2: missing the owner column \(the row has fewer values than the "
                                         r"header\)$"):
        parse_csv("domain,name,owner\nacme.com,Acme\n", path, ("domain", "name", "owner"),
                  required=("domain", "name", "owner"))


@pytest.mark.parametrize("where", ["header", "row"])
def test_a_csv_value_over_the_csv_modules_limit_is_refused_naming_the_file_and_line(tmp_path, where):
    """csv.Error ("field larger than field limit") was no ValueError: a traceback at start."""
    huge = '"' + "x" * 200_000 + '"'
    text = f"domain,name,{huge}\n" if where == "header" else f"domain,name\nacme.com,Acme\nbig.com,{huge}\n"
    with pytest.raises(ValueError, match=rf"companies\.csv:{1 if where == 'header' else 3}: not read as CSV: field "
                                         r"larger than field limit"):
        parse_csv(text, tmp_path / "companies.csv", COMPANY_COLUMNS, required=("domain", "name"))
