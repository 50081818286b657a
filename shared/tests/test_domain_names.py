import pytest

from leadpipe_common.domain_names import ascii_domain, domain_alone, is_domain, unicode_domain


@pytest.mark.parametrize("spelling", ["闲鱼.shop", "闲鱼.SHOP", "XN--DI5AU2K.shop", "xn--di5au2k.shop"])
def test_both_spellings_of_an_internationalised_domain_compare_as_one(spelling):
    assert ascii_domain(spelling) == "xn--di5au2k.shop"


def test_a_sharp_s_is_its_own_letter_as_at_capture_not_ss():
    """IDNA 2003 (Python's "idna" codec) read straße.de as strasse.de: another domain, someone else's account."""
    assert ascii_domain("straße.de") == "xn--strae-oqa.de" != ascii_domain("strasse.de")


@pytest.mark.parametrize(("written", "folded"), [("Straße.DE", "straße.de"), ("STRAẞE.de", "straße.de"),
                                                  ("ΑΣ.gr", "ασ.gr"), ("ας.GR", "ας.gr"), ("ACME.com", "acme.com")])
def test_a_domain_folds_to_the_unicode_spelling_an_address_keeps_with_its_sharp_s_and_final_sigma(written, folded):
    """str.casefold folds straße.de into strasse.de, and ας.gr into ασ.gr: other domains."""
    assert unicode_domain(written) == folded


@pytest.mark.parametrize("name", ["😭.abrdns.com", "a_b.闲鱼.com"])
def test_a_name_idna_refuses_stays_as_it_is_and_equals_only_itself(name):
    assert ascii_domain(name.upper()) == name.lower()


@pytest.mark.parametrize("written", ["acme.com", "ACME.com", "müller.de", "xn--mller-kva.de", "a-b.co.uk"])
def test_a_domain_as_an_address_ends_in_it_is_one_in_either_spelling_and_any_case(written):
    assert is_domain(written)


@pytest.mark.parametrize("written", ["", "acme", "exa_mple.com", "-acme.com", "acme-.com", "a..b", "acme.com.",
                                     "😭.com", f"{'a' * 64}.com", "https://acme.com", "@acme.com", " acme.com"])
def test_what_no_address_ends_in_is_no_domain(written):
    assert not is_domain(written)


@pytest.mark.parametrize(("written", "alone"), [
    ("https://www.acme.com/about", "acme.com"), ("acme.com/about", "acme.com"), ("sales@Acme.com", "Acme.com"),
    ("@acme.com", "acme.com"), ("acme.com.", "acme.com"), ("www.acme.com", "acme.com"), (" acme.com ", "acme.com"),
])
def test_the_domain_a_site_or_an_address_names_is_found_for_a_refusal_to_name(written, alone):
    assert domain_alone(written) == alone


@pytest.mark.parametrize("written", ["acme.com", "www.com", "acme", "https://[acme.com", "exa_mple.com."])
def test_a_domain_itself_or_what_names_none_has_no_domain_alone(written):
    assert domain_alone(written) is None
