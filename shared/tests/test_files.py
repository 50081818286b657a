"""A reference file that cannot be used is named with its setting and the reason."""

import pytest

from leadpipe_common.files import read_text


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
