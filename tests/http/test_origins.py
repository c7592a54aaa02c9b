"""The one Origin rule (gateway/http/origins.py): which origins are ours, what a refusal
logs, when a loopback public URL contradicts the port `serve` listens on, and that every
route that takes a POST applies it (the webhooks excepted)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from config.settings import Settings
from gateway.http.origins import allowed_origins, own_origins, port_mismatch, refused_origin
from tests.support.app import running

SettingsFactory = Callable[..., Settings]


def _post(*headers: tuple[str, str]) -> Request:
    raw = [(name.encode(), value.encode()) for name, value in headers]
    return Request({"type": "http", "method": "POST", "path": "/buy/pro", "headers": raw})


@pytest.mark.parametrize("public", ["http://127.0.0.1:8000", "http://localhost:8000/"])
def test_a_loopback_public_url_accepts_its_three_spellings_on_its_port_only(
    settings_factory: SettingsFactory, public: str
) -> None:
    settings = settings_factory(public_url=public)

    ours = set(own_origins(settings))

    assert ours == {"http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"}
    assert "http://localhost:8001" not in allowed_origins(settings)


def test_a_public_host_accepts_itself_its_aliases_and_the_seller_sites(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory(
        public_url="https://pay.example.com",
        origin_aliases=["https://WWW.pay.example.com:443/"],
        allowed_origins=["https://shop.example.com/"],
    )

    assert own_origins(settings) == ["https://pay.example.com", "https://www.pay.example.com"]
    assert allowed_origins(settings) == {
        "https://pay.example.com",
        "https://www.pay.example.com",
        "https://shop.example.com",
    }


@pytest.mark.parametrize(
    "headers",
    [
        (("origin", "http://localhost:8000"),),
        (("origin", "http://[::1]:8000"),),
        (("referer", "http://localhost:8000/buy/pro"),),
        (),  # a program, not a browser
    ],
)
def test_our_own_pages_and_programs_pass_silently(
    settings_factory: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
    headers: tuple[tuple[str, str], ...],
) -> None:
    settings = settings_factory(public_url="http://127.0.0.1:8000")

    with caplog.at_level(logging.WARNING):
        assert refused_origin(_post(*headers), settings) is None

    assert caplog.records == []


@pytest.mark.parametrize(
    ("headers", "seen"),
    [
        ((("origin", "http://localhost:9000"),), "http://localhost:9000"),
        ((("origin", "null"),), "null"),
        ((("referer", "https://Evil.example/x?y=1"),), "https://evil.example"),
        # the Origin is what counts, whatever the Referer says
        ((("origin", "https://evil.example"), ("referer", "http://127.0.0.1:8000/")), None),
    ],
)
def test_a_refusal_logs_one_warning_naming_the_origin_and_the_settings(
    settings_factory: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
    headers: tuple[tuple[str, str], ...],
    seen: str | None,
) -> None:
    settings = settings_factory(public_url="http://127.0.0.1:8000")

    with caplog.at_level(logging.WARNING):
        refused = refused_origin(_post(*headers), settings)

    assert refused == (seen or "https://evil.example")
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert repr(refused) in message
    assert "POST /buy/pro" in message
    assert "GATEWAY_ORIGIN_ALIASES" in message
    assert "GATEWAY_ALLOWED_ORIGINS" in message
    assert "\n" not in message


@pytest.mark.parametrize("header", ["origin", "referer"])
def test_a_long_foreign_origin_is_cut_in_the_log_line_and_the_answer(
    settings_factory: SettingsFactory, caplog: pytest.LogCaptureFixture, header: str
) -> None:
    # The check runs before any rate limit: a header's worth of log per request is a flood.
    settings = settings_factory(public_url="http://127.0.0.1:8000")
    long_origin = "https://" + "a" * 8000 + ".example"

    with caplog.at_level(logging.WARNING):
        refused = refused_origin(_post((header, long_origin)), settings)

    assert refused is not None
    assert len(refused) <= 101
    assert refused.startswith("https://aaaa")
    [record] = caplog.records
    assert len(record.getMessage()) < 500


@pytest.mark.parametrize(
    ("public", "port", "warns"),
    [
        ("http://127.0.0.1:8000", 8000, False),
        ("http://127.0.0.1:8000", 8001, True),
        ("http://localhost", 80, False),
        ("http://localhost", 8000, True),
        ("https://[::1]", 443, False),
        ("https://[::1]", 8443, True),
        ("https://pay.example.com", 8000, False),  # behind a proxy: any port is right
    ],
)
def test_a_loopback_public_url_on_another_port_is_named(
    settings_factory: SettingsFactory, public: str, port: int, warns: bool
) -> None:
    found = port_mismatch(settings_factory(public_url=public), port)

    assert (found is not None) == warns
    if found is not None:
        assert f"serving on port {port}" in found
        assert "GATEWAY_PUBLIC_URL" in found
        assert "payment returns" in found


# Signed by the provider, which names no origin: exempt.
EXEMPT = ("/webhooks/",)


async def test_every_post_route_but_the_webhooks_refuses_a_foreign_origin(app: Starlette) -> None:
    posts = sorted(
        route.path
        for route in app.routes
        if isinstance(route, Route) and "POST" in (route.methods or ())
    )
    checked = [path for path in posts if not path.startswith(EXEMPT)]
    async with running(app) as client:
        answers = {
            path: await client.post(
                path.replace("{provider}", "stripe").replace("{product}", "pro"),
                content=b'{"email": "buyer@example.com", "key": "x", "fingerprint": "m1"}',
                headers={"origin": "https://evil.example"},
            )
            for path in checked
        }

    # a new state-changing route joins this list, and so the rule, on purpose
    assert checked == [
        "/buy/{product}",
        "/checkout/{provider}/{product}",
        "/licenses/activate",
        "/licenses/deactivate",
        "/licenses/recover",
        "/licenses/token",
        "/licenses/validate",
    ]
    assert {path: resp.status_code for path, resp in answers.items()} == dict.fromkeys(checked, 403)
