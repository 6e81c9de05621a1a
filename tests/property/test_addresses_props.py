"""`addresses.is_public` (integer ranges) and `addresses.canonical` (IPv4 fast path) agree with
`ipaddress` on any address text, including text that is not an address (read from the wire)."""
import ipaddress

import pytest
from hypothesis import given, strategies as st

from auditor import addresses


def reference_public(value: str) -> bool:
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def reference_canonical(value: str):
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


# Edges of every special-purpose block: the first and last address and their neighbours.
_EDGES = []
for constants in (ipaddress._IPv4Constants, ipaddress._IPv6Constants):
    for net in [*constants._private_networks, ipaddress.ip_network("100.64.0.0/10"),
                ipaddress.ip_network("224.0.0.0/4"), ipaddress.ip_network("ff00::/8")]:
        lo, hi = int(net.network_address), int(net.broadcast_address)
        top = 2**32 - 1 if net.version == 4 else 2**128 - 1
        for n in (lo - 1, lo, hi, hi + 1):
            if 0 <= n <= top:
                _EDGES.append(str(ipaddress.ip_address(n) if net.version == 4 else ipaddress.IPv6Address(n)))

addresses_text = (st.ip_addresses().map(str)
                  | st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}")
                  | st.sampled_from(_EDGES)
                  | st.from_regex(r"[0-9a-fA-F:.%]{0,45}", fullmatch=True)
                  # a zone is any text (`canonical` looks at the spelling before it)
                  | st.tuples(st.ip_addresses(v=6).map(str), st.text(max_size=8)).map("%".join)
                  # host names, some spelt only with hex letters and digits (`cafe.de`)
                  | st.from_regex(r"[a-z0-9-]{1,12}(\.[a-z0-9-]{1,12}){0,3}\.?", fullmatch=True)
                  | st.from_regex(r"[a-f0-9]{1,8}(\.[a-f0-9]{1,8}){0,4}", fullmatch=True)
                  | st.text(max_size=20))


@given(addresses_text)
def test_is_public_agrees_with_ipaddress(value):
    assert addresses.is_public(value) == reference_public(value)


@given(addresses_text)
def test_canonical_agrees_with_ipaddress(value):
    assert addresses.canonical(value) == reference_canonical(value)


@pytest.mark.parametrize("value", ["1::%", "1::%%", "1::%a%b", "fe80::1%", "2001:db8::1%eth0",
                                   "::2%/", "2001:db8::1%eth0/64"])
def test_a_zone_is_one_non_empty_name_as_ipaddress_reads_it(value):
    """(Found by the property above: "1::%" was taken for a public address, and so was
    "::2%/" once zones of any text were drawn.)"""
    assert addresses.is_public(value) == reference_public(value)
    assert addresses.canonical(value) == reference_canonical(value)
