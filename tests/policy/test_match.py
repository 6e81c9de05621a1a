"""Azure Firewall wildcard semantics, and the fast matcher against a regex reference."""
import re

import pytest
from hypothesis import given, strategies as st

from auditor.policy.match import (FqdnMatcher, PatternError, is_storage_name, is_storage_pattern,
                                  normalise_pattern, pattern_matches)
from auditor.hostnames import normalise as normalise_name


def m(pattern: str, name: str) -> bool:
    matcher = FqdnMatcher([(normalise_pattern(pattern), pattern)])
    return matcher.match(normalise_name(name)) is not None


@pytest.mark.parametrize("pattern,name,expected", [
    ("*.contoso.com", "a.contoso.com", True),
    ("*.contoso.com", "a.b.c.contoso.com", True),          # any depth
    ("*.contoso.com", "contoso.com", False),               # not the apex
    ("*.contoso.com", "xcontoso.com", False),
    ("*contoso.com", "contoso.com", True),
    ("*contoso.com", "xcontoso.com", True),
    ("*contoso.com", "a.contoso.com", True),
    ("*contoso.com", "contoso.org", False),
    ("contoso.com", "CONTOSO.COM.", True),                 # case, trailing dot
    ("contoso.com", "www.contoso.com", False),
    ("*", "anything.example", True),
    ("bücher.example", "xn--bcher-kva.example", True),     # IDNA: A-labels
    ("xn--bcher-kva.example", "BÜCHER.example", True),
    ("*.Example.ORG.", "x.example.org", True),
])
def test_wildcards(pattern, name, expected):
    assert m(pattern, name) is expected


@pytest.mark.parametrize("bad", ["www.*.com", "*.*.com", "a*.com", "https://x.com/a", "x.com:443",
                                 "", "*.", "bad_label-.com", "a..b"])
def test_rejected_patterns(bad):
    with pytest.raises(PatternError):
        normalise_pattern(bad)


def test_most_specific_wins():
    matcher = FqdnMatcher([("*", "any"), ("*.com", "com"), ("*.b.com", "b"), ("a.b.com", "exact"),
                           ("*x.b.com", "loose")])
    assert matcher.match("a.b.com") == "exact"
    assert matcher.match("z.a.b.com") == "b"
    assert matcher.match("c.com") == "com"
    assert matcher.match("zx.b.com") == "b"       # "*.b.com" is more specific than "*x.b.com"
    assert matcher.match("xb.com") == "com"
    assert matcher.match("org") == "any"


def test_empty_matcher_is_false():
    assert not FqdnMatcher()
    assert FqdnMatcher([("a.com", 1)])


def test_storage():
    assert is_storage_name("acct.blob.core.windows.net")
    assert is_storage_name("acct.dfs.core.windows.net")
    assert not is_storage_name("acct.web.core.windows.net")
    assert is_storage_pattern("*.blob.core.windows.net")
    assert is_storage_pattern("acct.queue.core.windows.net")
    assert not is_storage_pattern("*.core.windows.net")
    assert not is_storage_pattern("vault.azure.net")


# --- property: the fast matcher agrees with a regex built from the spec text --------------
def reference(pattern: str, name: str) -> bool:
    """SPEC §6 read literally: '*' only left-most; '*.' = one or more labels; '*x' = any prefix."""
    if pattern == "*":
        rx = r".+"
    elif pattern.startswith("*."):
        rx = r"(?:[^.]+\.)+" + re.escape(pattern[2:])
    elif pattern.startswith("*"):
        rx = r".*" + re.escape(pattern[1:])
    else:
        rx = re.escape(pattern)
    return re.fullmatch(rx, name) is not None


labels = st.sampled_from(["a", "b", "ab", "contoso", "com", "xn--bcher-kva", "x1", "net"])
names = st.lists(labels, min_size=1, max_size=5).map(".".join)
patterns = st.one_of(
    names,
    names.map(lambda n: "*." + n),
    names.map(lambda n: "*" + n),
    st.just("*"),
)


@given(st.lists(patterns, min_size=1, max_size=6), names)
def test_matcher_agrees_with_reference(pats, name):
    matcher = FqdnMatcher((p, p) for p in pats)
    got = matcher.match(name)
    expected = [p for p in pats if reference(p, name)]
    assert (got is not None) == bool(expected)
    if got is not None:
        assert reference(got, name) and pattern_matches(got, name)


@given(patterns, names, st.booleans(), st.booleans())
def test_case_and_trailing_dot_irrelevant(pattern, name, upper, dot):
    raw = (name.upper() if upper else name) + ("." if dot else "")
    assert m(pattern, raw) == reference(pattern, name)
