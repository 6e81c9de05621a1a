"""The registered domain (eTLD+1) comes from the Public Suffix List as the library reads it."""
from __future__ import annotations

from publicsuffixlist import PublicSuffixList

from auditor import hostnames


def test_our_faster_reading_of_the_list_is_the_librarys():
    """`hostnames._list` hands the library pre-encoded rules instead of letting it IDNA-encode
    all of them; the rule set must be exactly the one its own reading builds."""
    ours, theirs = hostnames._list(), PublicSuffixList()
    assert ours._publicsuffix == theirs._publicsuffix and ours._maxlabel == theirs._maxlabel
    assert any(not r.isascii() for r in ours._publicsuffix)        # the list has IDN rules
    assert any(r.startswith("xn--") for r in ours._publicsuffix)


def test_registered_domains_of_ordinary_idn_and_exception_names():
    assert hostnames.registered_domain("files.pythonhosted.org") == "pythonhosted.org"
    assert hostnames.registered_domain("a.b.example.co.uk") == "example.co.uk"
    assert hostnames.registered_domain("www.city.kawasaki.jp") == "city.kawasaki.jp"  # !rule
    assert hostnames.registered_domain("shop.xn--fiqs8s") == "shop.xn--fiqs8s"        # .中国
    assert hostnames.registered_domain("a.shop.xn--fiqs8s") == "shop.xn--fiqs8s"
    assert hostnames.registered_domain("co.uk") == "co.uk"          # a suffix keys itself
