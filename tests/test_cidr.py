"""IP allowlists: validation messages, IPv4/IPv6 matching, IPv4-mapped addresses, hostile input."""

from __future__ import annotations

import pytest

from app.rules.cidr import MAX_ENTRIES, Allowlist, CidrError, client_address, parse_network


def test_matches_ipv4_and_ipv6_networks_and_single_addresses():
    allow = Allowlist.parse(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"])
    assert allow.allows("203.0.113.200") and allow.allows("2001:db8:1::5") and allow.allows("198.51.100.7")
    assert not allow.allows("203.0.114.1") and not allow.allows("2001:db9::1") and not allow.allows("198.51.100.8")


def test_ipv4_mapped_ipv6_is_the_ipv4_address_both_ways():
    assert Allowlist.parse(["203.0.113.0/24"]).allows("::ffff:203.0.113.9")
    mapped = Allowlist.parse(["::ffff:203.0.113.0/120"])
    assert mapped.networks[0].version == 4 and mapped.allows("203.0.113.9") and not mapped.allows("203.0.112.9")
    assert not Allowlist.parse(["::/0"]).allows("::ffff:203.0.113.9")  # all of IPv6 is not all of IPv4


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("10.0.0.1/24", "host bits set: did you mean 10.0.0.0/24?"),
        ("2001:db8::1/32", "did you mean 2001:db8::/32?"),
        ("10.0.0.0/33", "is not a CIDR"),
        ("300.1.1.1", "is not a CIDR"),
        ("example.com", "is not a CIDR"),
        ("", "is not a CIDR"),
        ("   ", "is not a CIDR"),
        ("fe80::1%eth0", "IPv6 zone"),
        ("1" * 10_000, "is not a CIDR"),
        (None, "is not a CIDR"),
        (42, "is not a CIDR"),
        ("10.0.0.0/8\n", None),
    ],
)
def test_entries_are_validated_with_messages_naming_the_fix(entry, message):
    if message is None:
        assert str(parse_network(entry)) == "10.0.0.0/8"
        return
    with pytest.raises(CidrError, match=message.replace("?", r"\?").replace(".", r"\.")) as raised:
        parse_network(entry)
    assert len(str(raised.value)) < 200  # a huge entry is not echoed back whole


def test_list_level_validation():
    with pytest.raises(CidrError, match="at least one network: remove it"):
        Allowlist.parse([])
    with pytest.raises(CidrError, match="not one string"):
        Allowlist.parse("10.0.0.0/8")
    with pytest.raises(CidrError, match=f"at most {MAX_ENTRIES}"):
        Allowlist.parse([f"10.{i // 256}.{i % 256}.0/24" for i in range(MAX_ENTRIES + 1)])
    assert len(Allowlist.parse(["10.0.0.0/8", "10.0.0.0/8"]).networks) == 1


@pytest.mark.parametrize(
    "client",
    ["", "not-an-ip", "203.0.113.9, 10.0.0.1", "fe80::1%eth0", "203.0.113.9:443", "1" * 5000, None, b"1.2.3.4"],
)
def test_an_unreadable_client_address_never_passes(client):
    assert client_address(client) is None
    assert not Allowlist.parse(["0.0.0.0/0", "::/0"]).allows(client)
