"""The private-network guard's address rules, numeric host spellings and resolver; the byte budget."""

import asyncio
import ipaddress

import pytest

from components.download import netguard
from components.download.budget import ByteBudget

REFUSED = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "::1": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.1": "private",
    "fc00::1": "private",
    "169.254.169.254": "link-local",
    "fe80::1": "link-local",
    "224.0.0.1": "multicast",
    "ff02::1": "multicast",
    "0.0.0.0": "unspecified",
    "::": "unspecified",
    "240.0.0.1": "reserved",
    "100.64.0.1": "non-global",
    "fec0::1": "site-local",
    # IPv6 forms that carry an IPv4 address are judged by that address.
    "::ffff:127.0.0.1": "loopback",
    "::ffff:10.0.0.1": "private",
    "2002:7f00:1::": "loopback",
    "64:ff9b::a9fe:a9fe": "link-local",
}
PUBLIC = ["8.8.8.8", "151.101.1.69", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"]


@pytest.mark.parametrize("address,why", sorted(REFUSED.items()))
def test_internal_addresses_are_refused_with_their_kind(address, why):
    assert netguard.refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert netguard.refusal(ipaddress.ip_address(address)) == ""


def test_allowed_networks_lift_the_guard_for_themselves_only():
    allowed = netguard.parse_networks(["10.1.2.0/24", "127.0.0.1/32"])
    assert netguard.refusal(ipaddress.ip_address("10.1.2.77"), allowed) == ""
    assert netguard.refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) == ""
    assert netguard.refusal(ipaddress.ip_address("10.1.3.1"), allowed) == "private"
    assert netguard.refusal(ipaddress.ip_address("127.0.0.2"), allowed) == "loopback"
    with pytest.raises(ValueError, match="'10.1.2/24' is not an IP network"):
        netguard.parse_networks(["10.1.2/24"])


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "0x7f.0.0.1",
        "127.0.0.1",
        "[::ffff:127.0.0.1]",
        "::ffff:7f00:1",
    ],
)
def test_every_numeric_spelling_of_loopback_is_seen_and_refused(host):
    assert netguard.numeric_host(host) in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::ffff:7f00:1"))
    with pytest.raises(netguard.BlockedAddress, match="loopback"):
        netguard.check_literal(host)


@pytest.mark.parametrize("host", ["example.com", "1.2.3.4.example", "0x7f.example", "localhost", "08.0.0.1"])
def test_names_are_left_to_the_resolver(host):
    assert netguard.numeric_host(host) is None
    netguard.check_literal(host)  # no exception: the resolver judges names after DNS


def test_numeric_hosts_are_rewritten_as_browsers_do():
    assert netguard.canonical_url("http://2130706433:8080/a.jpg?x=1") == "http://127.0.0.1:8080/a.jpg?x=1"
    assert netguard.canonical_url("http://0x08.0x08.0x08.0x08/a.jpg") == "http://8.8.8.8/a.jpg"
    assert netguard.canonical_url("https://cdn.example.com/a.jpg") == "https://cdn.example.com/a.jpg"
    assert netguard.canonical_url("http://[::1]:80/a") == "http://[::1]:80/a"


def test_the_resolver_refuses_a_name_that_resolves_to_loopback():
    async def resolve(allowed):
        resolver = netguard.GuardedResolver(allowed)
        try:
            return await resolver.resolve("localhost", 80)
        finally:
            await resolver.close()

    with pytest.raises(netguard.BlockedAddress, match=r"localhost resolves to (127\.0\.0\.1|::1), a loopback address"):
        asyncio.run(resolve(()))
    results = asyncio.run(resolve(netguard.parse_networks(["127.0.0.0/8", "::1/128"])))
    assert {r["host"] for r in results} <= {"127.0.0.1", "::1"} and results


def test_byte_budget_makes_the_next_request_wait_until_bytes_are_released():
    async def scenario():
        budget = ByteBudget(100)
        order = []
        assert await budget.acquire(70) == 70

        async def later(size, name):
            await budget.acquire(size)
            order.append(name)

        big = asyncio.ensure_future(later(60, "big"))
        small = asyncio.ensure_future(later(10, "small"))
        await asyncio.sleep(0.01)
        assert order == [] and budget.used == 70  # small fits but waits its turn behind big
        budget.release(70)
        await asyncio.gather(big, small)
        assert order == ["big", "small"] and budget.used == 70

    async def oversized_and_cancelled():
        budget = ByteBudget(100)
        assert await budget.acquire(500) == 100  # larger than the budget: granted the whole budget
        waiter = asyncio.ensure_future(budget.acquire(1))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        budget.release(100)
        assert budget.used == 0 and await budget.acquire(100) == 100

    asyncio.run(scenario())
    asyncio.run(oversized_and_cancelled())
