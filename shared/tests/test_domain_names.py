import pytest

from leadpipe_common.domain_names import ascii_domain


@pytest.mark.parametrize("spelling", ["闲鱼.shop", "闲鱼.SHOP", "XN--DI5AU2K.shop", "xn--di5au2k.shop"])
def test_both_spellings_of_an_internationalised_domain_compare_as_one(spelling):
    assert ascii_domain(spelling) == "xn--di5au2k.shop"


def test_a_sharp_s_is_its_own_letter_as_at_capture_not_ss():
    """IDNA 2003 (Python's "idna" codec) read straße.de as strasse.de: another domain, someone else's account."""
    assert ascii_domain("straße.de") == "xn--strae-oqa.de" != ascii_domain("strasse.de")


@pytest.mark.parametrize("name", ["😭.abrdns.com", "a_b.闲鱼.com"])
def test_a_name_idna_refuses_stays_as_it_is_and_equals_only_itself(name):
    assert ascii_domain(name.upper()) == name.lower()
