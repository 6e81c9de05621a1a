"""JA4 against a fingerprint computed by someone else, and the fingerprint cache against the
fingerprint itself (a cache hit must be exactly what the hello would get, whatever the hello).

The reference: a Chrome 143 ClientHello as tls.browserleaks.com reported it (`ja4` and
`ja4_ro`, the raw original-order lists, GREASE already left out), found in the public
repository service0427/v2_cp_app, tls.md.
"""
from __future__ import annotations

import dataclasses

from hypothesis import given, settings, strategies as st

from auditor.decode import ja4
from auditor.decode.tls import ClientHello

BROWSERLEAKS_JA4 = "t13d1516h2_8daaf6152771_d8a2da3f94cd"
BROWSERLEAKS_RO = ("t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,"
                   "002f,0035_002d,0033,0010,fe0d,0017,44cd,0000,000b,000a,002b,ff01,0023,0012,"
                   "0005,000d,001b_0403,0804,0401,0503,0805,0501,0806,0601")


def _hex_list(text: str) -> tuple[int, ...]:
    return tuple(int(x, 16) for x in text.split(","))


def chrome_143(grease: bool = True) -> ClientHello:
    _a, ciphers, extensions, sigalgs = BROWSERLEAKS_RO.split("_")
    c, e = _hex_list(ciphers), _hex_list(extensions)
    if grease:      # as Chrome sends it: GREASE first in both lists and among the versions
        c, e = (0x3A3A, *c), (0xDADA, *e, 0x1A1A)
    return ClientHello(sni="tls.browserleaks.com", alpn=("h2", "http/1.1"), ech=True,
                       version=0x0303, supported_versions=(0x7A7A, 0x0304, 0x0303),
                       ciphers=c, extensions=e, signature_algorithms=_hex_list(sigalgs),
                       alpn_first=b"h2")


def test_matches_a_fingerprint_computed_by_another_implementation():
    assert ja4.ja4(chrome_143(grease=False)) == BROWSERLEAKS_JA4
    assert ja4.ja4(chrome_143()) == BROWSERLEAKS_JA4      # GREASE is ignored everywhere
    assert ja4.ja4(chrome_143(), "q").startswith("q13d1516h2_")


def test_a_hit_is_the_fingerprint_and_everything_ja4_reads_is_in_the_key():
    cache = ja4.Fingerprints()
    base = chrome_143()
    assert cache.ja4(base) == cache.ja4(base) == BROWSERLEAKS_JA4
    assert len(cache) == 1
    # Each field JA4 reads, changed alone, is a different fingerprint, never the cached one.
    variants = [dataclasses.replace(base, version=0x0301, supported_versions=()),
                dataclasses.replace(base, alpn_first=b"http/1.1"),
                dataclasses.replace(base, ciphers=base.ciphers[:-1]),
                dataclasses.replace(base, extensions=base.extensions[2:]),   # GREASE and 002d
                dataclasses.replace(base, signature_algorithms=base.signature_algorithms[::-1]),
                dataclasses.replace(base, supported_versions=(0x0303,))]
    for v in variants:
        assert cache.ja4(v) == ja4.ja4(v) != BROWSERLEAKS_JA4
    assert cache.ja4(base, "q") == ja4.ja4(base, "q")


_values = st.lists(st.integers(0, 0xFFFF), max_size=40).map(tuple)
hellos = st.builds(ClientHello, sni=st.none(), alpn=st.just(()), ech=st.just(False),
                   version=st.sampled_from([0x0301, 0x0302, 0x0303, 0x0304, 0x0300, 0xFEFD, 0]),
                   supported_versions=st.lists(st.sampled_from([0x0304, 0x0303, 0x0A0A, 0x7F1C]),
                                               max_size=3).map(tuple),
                   ciphers=_values, extensions=_values, signature_algorithms=_values,
                   alpn_first=st.binary(max_size=4))


# A FIFO of a few entries: 300 examples reach every eviction order (the CI profile's 1,000
# cost 20 s of the default suite for nothing more).
@settings(max_examples=300)
@given(st.lists(st.tuples(hellos, st.sampled_from("tq")), min_size=1, max_size=30),
       st.integers(1, 8))
def test_the_cache_never_changes_a_fingerprint_and_stays_within_its_cap(seen, cap):
    evicted = []
    cache = ja4.Fingerprints(evicted.append, max_entries=cap)
    model: list[tuple] = []         # a FIFO of what the cache should hold, and its evictions
    model_evicted = 0
    for hello, transport in seen + seen:        # every hello again: hits and misses alike
        assert cache.ja4(hello, transport) == ja4.ja4(hello, transport)
        key = (transport, hello.version, hello.alpn_first, hello.ciphers, hello.extensions,
               hello.supported_versions, hello.signature_algorithms)
        if key not in model:
            model.append(key)
            if len(model) > cap:
                del model[0]
                model_evicted += 1
        assert len(cache) == len(model) <= cap
    assert evicted == [1] * model_evicted       # each eviction counted, as it happened


def test_ever_new_hellos_cycle_the_cache_and_are_counted():
    evicted = []
    cache = ja4.Fingerprints(evicted.append)
    base = chrome_143()
    for i in range(ja4.FINGERPRINT_CACHE * 3):
        cache.ja4(dataclasses.replace(base, ciphers=(i, *base.ciphers)))
    assert len(cache) == ja4.FINGERPRINT_CACHE
    assert len(evicted) == ja4.FINGERPRINT_CACHE * 2


def test_a_hello_listing_too_many_values_is_fingerprinted_not_kept():
    cache = ja4.Fingerprints()
    huge = dataclasses.replace(chrome_143(), ciphers=tuple(range(ja4.MAX_CACHED_VALUES)))
    assert cache.ja4(huge) == ja4.ja4(huge)
    assert len(cache) == 0
