"""Rate-limit keys that match real people and networks (issue 16): one budget per mailbox
however its address is capitalised, on every route that keys by email, and one per IPv6 /64
(`limits.ipv6_prefix`); the buyer email stored on the order is left as written."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from config.catalog import Catalog
from config.settings import LimitsSettings, Settings
from gateway.db.models import Order
from gateway.http.errors import TooManyRequests
from gateway.http.limits import RateLimiter, mailbox_key, network_key
from tests.support.app import running
from tests.support.issuer import fake_gateway

SettingsFactory = Callable[..., Settings]
SPELLINGS = ["Buyer@Example.com", "BUYER@example.COM", "  buyer@EXAMPLE.com "]


@pytest.mark.parametrize(
    ("ip", "prefix", "key"),
    [
        ("203.0.113.7", 64, "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:aaaa::1", 56, "2001:db8:1::/56"),
        ("2001:db8::1", 128, "2001:db8::1/128"),
        ("::ffff:203.0.113.7", 64, "203.0.113.7"),
        ("fe80::1%eth0", 64, "fe80::/64"),
        ("unknown", 64, "unknown"),
    ],
)
def test_an_ipv6_client_is_keyed_by_its_network(ip: str, prefix: int, key: str) -> None:
    assert network_key(ip, prefix) == key


def test_a_mailbox_key_is_trimmed_and_case_folded() -> None:
    assert {mailbox_key(s) for s in SPELLINGS} == {"buyer@example.com"}


async def test_one_ipv6_64_shares_one_budget_and_the_next_64_has_its_own() -> None:
    limiter = RateLimiter(LimitsSettings(checkout_per_ip="3/minute"))

    for host in range(1, 4):
        await limiter.check("checkout_per_ip", f"2001:db8:1:2::{host}")
    with pytest.raises(TooManyRequests):
        await limiter.check("checkout_per_ip", "2001:db8:1:2:ffff::99")
    await limiter.check("checkout_per_ip", "2001:db8:1:3::1")


def test_the_ipv6_prefix_is_a_prefix_length() -> None:
    from pydantic import ValidationError

    assert LimitsSettings().ipv6_prefix == 64
    with pytest.raises(ValidationError, match="ipv6_prefix"):
        LimitsSettings(ipv6_prefix=129)


async def test_json_checkout_counts_every_spelling_of_one_mailbox_against_one_budget(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    app, fake = fake_gateway(
        db_url, settings_factory, catalog, limits=LimitsSettings(checkout_per_email="2/minute")
    )
    async with running(app) as client:
        answers = [
            await client.post("/checkout/stripe/pro", json={"email": email}) for email in SPELLINGS
        ]
        stored = sorted([order.buyer_email for order in await Order.all()])

    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[2].json()["error"] == "rate_limited"
    assert len(fake.created) == 2
    # only the key is folded: the order keeps the address as the buyer wrote it
    assert stored == ["BUYER@example.com", "Buyer@example.com"]


@pytest.mark.parametrize(
    ("path", "rule", "extra", "ok"),
    [
        ("/buy/pro", "checkout_per_email", {"provider": "stripe"}, 303),
        ("/licenses/recover", "recover_per_email", {}, 200),
    ],
)
async def test_buyer_forms_count_every_spelling_of_one_mailbox_against_one_budget(
    db_url: str,
    settings_factory: SettingsFactory,
    catalog: Catalog,
    path: str,
    rule: str,
    extra: dict[str, str],
    ok: int,
) -> None:
    app, _ = fake_gateway(db_url, settings_factory, catalog, limits={rule: "2/hour"})
    async with running(app) as client:
        answers = [await client.post(path, data={"email": e, **extra}) for e in SPELLINGS]

    assert [a.status_code for a in answers] == [ok, ok, 429]
    assert "Please wait" in answers[2].text


async def _post_from(app: Starlette, peer: str, n: int) -> int:
    transport = httpx.ASGITransport(app=app, client=(peer, 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        answer = await client.post("/checkout/stripe/pro", json={"email": f"b{n}@example.com"})
    return answer.status_code


async def test_checkouts_from_one_ipv6_64_share_the_per_ip_budget(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    # given a 3/minute budget per client network
    app, _ = fake_gateway(
        db_url, settings_factory, catalog, limits=LimitsSettings(checkout_per_ip="3/minute")
    )
    async with running(app):
        # when four addresses of one /64 and then one of the next /64 check out
        same_64 = [await _post_from(app, f"2001:db8:1:2::{n:x}", n) for n in range(1, 5)]
        next_64 = await _post_from(app, "2001:db8:1:3::1", 5)

    # then the fourth is refused, and the neighbouring network still buys
    assert same_64 == [201, 201, 201, 429]
    assert next_64 == 201


async def test_a_narrower_configured_prefix_keys_by_that_network(
    db_url: str, settings_factory: SettingsFactory, catalog: Catalog
) -> None:
    limits = LimitsSettings(checkout_per_ip="2/minute", ipv6_prefix=48)
    app, _ = fake_gateway(db_url, settings_factory, catalog, limits=limits)
    async with running(app):
        answers = [await _post_from(app, f"2001:db8:1:{n:x}::1", n) for n in range(1, 4)]

    assert answers == [201, 201, 429]
