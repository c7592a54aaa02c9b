"""Trusted proxies (issue 16): the client is the right-most X-Forwarded-For hop that is not a
trusted proxy, the header counts only from a trusted peer, and no header value gets a 500.
The same rule behind real proxy processes: tests/processes/test_trusted_proxies.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config.settings import SettingsError, load_settings
from gateway.http.limits import client_ip
from gateway.http.proxies import TrustedProxies, TrustedProxyMiddleware, parse_address
from tests.support.app import running

LOOPBACK = ["127.0.0.0/8", "::1/128"]
PRIVATE = ["127.0.0.1", "10.0.0.0/8"]


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        # nginx's $proxy_add_x_forwarded_for: the client's own text stays on the left
        (LOOPBACK, "127.0.0.1", ["6.6.6.6, 203.0.113.7"], "203.0.113.7"),
        (LOOPBACK, "127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        # two proxies of ours (loopback and a CIDR), each appending its peer
        (PRIVATE, "127.0.0.1", ["6.6.6.6, 203.0.113.7, 10.1.2.1"], "203.0.113.7"),
        # a forged trusted-looking hop left of the real client changes nothing
        (LOOPBACK, "127.0.0.1", ["127.0.0.9, 203.0.113.7"], "203.0.113.7"),
        # several header lines are one list, in order
        (LOOPBACK, "127.0.0.1", ["6.6.6.6", "203.0.113.7, 127.0.0.5"], "203.0.113.7"),
        # IPv6 peers and hops, with and without brackets and ports
        (LOOPBACK, "::1", ["2001:db8::7"], "2001:db8::7"),
        (LOOPBACK, "::1", ["6.6.6.6, [2001:db8::7]:4711"], "2001:db8::7"),
        (["::1", "fd00::/8"], "::1", ["2001:db8::7, fd12::1"], "2001:db8::7"),
        (LOOPBACK, "127.0.0.1", ["203.0.113.7:5555"], "203.0.113.7"),
        # a dual-stack socket's IPv4 peer (::ffff:127.0.0.1) is the IPv4 loopback
        (LOOPBACK, "::ffff:127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        # every hop trusted: the left-most of them (a proxy talking for itself)
        (LOOPBACK, "127.0.0.1", ["127.0.0.3, 127.0.0.2"], "127.0.0.3"),
    ],
)
def test_the_client_is_the_right_most_hop_that_is_not_a_trusted_proxy(
    trusted: list[str], peer: str, forwarded: list[str], client: str
) -> None:
    assert TrustedProxies(trusted).client(peer, forwarded) == client


@pytest.mark.parametrize("peer", ["203.0.113.9", "2001:db8::9", "10.0.0.1", "unknown"])
def test_an_untrusted_peer_is_the_client_whatever_its_header_says(peer: str) -> None:
    assert TrustedProxies(LOOPBACK).client(peer, ["198.51.100.1"]) == peer


@pytest.mark.parametrize(
    "forwarded",
    [
        "unknown",
        "",
        " , ,",
        "not-an-ip",
        "203.0.113.7, garbage",
        "[2001:db8::1",
        "1.2.3.4:5:6",
        "300.1.1.1",
        "\u00e9\u00e9\u00e9",
        "x" * 8000,
        ",".join(["127.0.0.1"] * 2000) + ",bogus",
    ],
)
def test_a_hop_that_is_not_an_address_ends_the_walk_at_the_proxy_that_passed_it(
    forwarded: str,
) -> None:
    # so no spelling makes up a fresh client (a rate-limit bucket of its own)
    assert TrustedProxies(LOOPBACK).client("127.0.0.1", [forwarded]) == "127.0.0.1"


def test_no_trusted_proxies_means_the_header_is_never_read() -> None:
    assert TrustedProxies([]).client("127.0.0.1", ["203.0.113.7"]) == "127.0.0.1"


@pytest.mark.parametrize(
    ("hop", "address"),
    [("1.2.3.4", "1.2.3.4"), ("1.2.3.4:80", "1.2.3.4"), ("[::1]:80", "::1"), ("::1", "::1")],
)
def test_a_hop_is_read_with_or_without_its_port(hop: str, address: str) -> None:
    assert str(parse_address(hop)) == address


def _echo_app(trusted: list[str]) -> Starlette:
    async def echo(request: Request) -> Response:
        return JSONResponse({"ip": client_ip(request), "scheme": request.url.scheme})

    return Starlette(
        routes=[Route("/", echo)], middleware=[Middleware(TrustedProxyMiddleware, trusted=trusted)]
    )


async def _ask(app: Starlette, peer: str, headers: dict[str, str]) -> dict[str, str]:
    transport = httpx.ASGITransport(app=app, client=(peer, 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        answer: dict[str, str] = (await client.get("/", headers=headers)).json()
    return answer


async def test_the_middleware_gives_client_ip_the_forwarded_client_and_scheme() -> None:
    app = _echo_app(LOOPBACK)
    forged = {"x-forwarded-for": "6.6.6.6, 203.0.113.7", "x-forwarded-proto": "https"}

    via_proxy = await _ask(app, "127.0.0.1", forged)
    direct = await _ask(app, "198.51.100.2", forged)
    junk_proto = await _ask(app, "127.0.0.1", {"x-forwarded-proto": "gopher"})

    assert via_proxy == {"ip": "203.0.113.7", "scheme": "https"}
    # an untrusted peer's headers are ignored, scheme included
    assert direct == {"ip": "198.51.100.2", "scheme": "http"}
    assert junk_proto == {"ip": "127.0.0.1", "scheme": "http"}


async def test_garbage_forwarding_headers_on_every_buyer_route_get_no_500(app: Starlette) -> None:
    junk = [b"unknown", b"", b"1.2.3.4:5:6, \xe9\xff", b"[::1", b"x" * 4000, b"::ffff:999.1.1.1"]
    async with running(app) as client:
        answers = [
            await client.post(
                "/licenses/recover",
                data={"email": "buyer@example.com"},
                headers=[(b"x-forwarded-for", value), (b"x-forwarded-proto", value)],
            )
            for value in junk
        ]
        checkout = await client.post(
            "/checkout/stripe/pro",
            json={"email": "buyer@example.com"},
            headers={"x-forwarded-for": "garbage, , ,"},
        )

    assert [a.status_code for a in answers] == [200] * len(junk)
    assert checkout.status_code == 201


def test_trusted_proxies_default_to_loopback_and_read_a_comma_separated_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = load_settings(config_file=None, _env_file=None)
    monkeypatch.setenv("GATEWAY_TRUSTED_PROXIES", " 10.0.0.5, 172.30.0.0/24 ,2001:db8::/48")
    listed = load_settings(config_file=None, _env_file=None)
    monkeypatch.setenv("GATEWAY_TRUSTED_PROXIES", '["192.0.2.1"]')
    as_json = load_settings(config_file=None, _env_file=None)

    assert default.trusted_proxies == LOOPBACK
    assert listed.trusted_proxies == ["10.0.0.5/32", "172.30.0.0/24", "2001:db8::/48"]
    assert as_json.trusted_proxies == ["192.0.2.1/32"]


def test_trusted_proxies_in_the_operator_toml(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text('trusted_proxies = ["127.0.0.1", "10.1.0.0/16"]\n')

    settings = load_settings(config_file=path, _env_file=None)

    assert settings.trusted_proxies == ["127.0.0.1/32", "10.1.0.0/16"]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("*", "'*' would let any client choose its own address"),
        ("10.0.0.1, 0.0.0.0/0", "'0.0.0.0/0' would let any client"),
        ("::/0", "'::/0' would let any client"),
        ("10.0.0.1, proxy.lan", "'proxy.lan' is not"),
    ],
)
def test_a_wildcard_an_everything_network_or_a_name_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, words: str
) -> None:
    monkeypatch.setenv("GATEWAY_TRUSTED_PROXIES", value)

    with pytest.raises(SettingsError) as err:
        load_settings(config_file=None, _env_file=None)

    assert "GATEWAY_TRUSTED_PROXIES" in str(err.value)
    assert words in str(err.value)
