"""The buyer pages' routes: the chooser and its post, lost-key recovery, static files.

Each handler reads the form, calls a service (the checkout's `start_checkout`, the
recovery queue) and answers with a page; the pages themselves live in `buy`, `recover` and
`status`, what the forms share in `forms`.
"""

from __future__ import annotations

from functools import partial

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.checkout.service import start_checkout
from gateway.http.errors import ServiceUnavailable
from gateway.http.origins import refused_origin
from gateway.pages.buy import chooser, product_not_found, provider_label
from gateway.pages.forms import BuyerPost, foreign_post, over_limit, wait_words
from gateway.pages.recover import queue_logged, recover_form
from gateway.state import AppState

_CHECKOUT_LIMITS = ("checkout_per_ip", "checkout_per_email")
_RECOVER_LIMITS = ("recover_per_ip", "recover_per_email")


async def buy_page(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    product_id = request.path_params["product"]
    if product_id not in state.purchase_options:
        return product_not_found(state.settings)
    return chooser(state, product_id, preferred=request.query_params.get("provider"))


async def buy_submit(request: Request) -> Response:
    """Create the order and the provider checkout, then send the browser to pay."""
    state: AppState = request.app.state.gateway
    product_id = request.path_params["product"]
    product = state.catalog.get(product_id)
    if product is None or product_id not in state.purchase_options:
        return product_not_found(state.settings)
    foreign = refused_origin(request, state.settings)
    if foreign is not None:
        return foreign_post(
            state.settings,
            "Please order from the shop's page",
            f"This order form was sent from another website ({foreign}), so we did not "
            "accept it. Nothing was ordered or charged.",
            path=f"/buy/{product.id}",
            button=f"Buy {product.name}",
        )
    post = await BuyerPost.read(request)
    # The chooser again, with what the buyer typed and what stopped the order.
    again = partial(chooser, state, product_id, email=post.shown_email)
    if post.email is None:
        return again(error=post.problem, error_field="email", status_code=422)
    choice = post.form.get("provider")
    provider = state.provider(choice) if isinstance(choice, str) else None
    if provider is None:
        return again(error="Please choose one of the ways to pay below.", status_code=422)
    refused = await over_limit(state, request, _CHECKOUT_LIMITS, post.email)
    if refused is not None:
        words = "Too many orders were started from here in a short time. " + wait_words(refused)
        return again(error=words, status_code=429, headers=refused.headers)
    try:
        started = await start_checkout(
            provider, product, post.email, public_url=state.settings.public_url
        )
    except ServiceUnavailable:
        label = provider_label(state, product_id, provider.name.value)
        return again(
            error=f"“{label}” is not reachable right now. Nothing was charged. "
            "Please try again in a few minutes or choose another way to pay.",
            status_code=503,
        )
    return RedirectResponse(started.checkout_url, status_code=303)


async def recover_page(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    return recover_form(state.settings)


async def recover_submit(request: Request) -> Response:
    state: AppState = request.app.state.gateway
    settings = state.settings
    foreign = refused_origin(request, settings)
    if foreign is not None:
        return foreign_post(
            settings,
            "Please use the form on this site",
            f"This request was sent from another website ({foreign}), so we did not "
            "accept it. No email was sent.",
            path="/licenses/recover",
            button="Open the form",
        )
    post = await BuyerPost.read(request)
    if post.email is None:
        return recover_form(settings, email=post.shown_email, error=post.problem, status_code=422)
    refused = await over_limit(state, request, _RECOVER_LIMITS, post.email)
    if refused is not None:
        words = "Too many requests for this form. " + wait_words(refused)
        return recover_form(
            settings, email=post.shown_email, error=words, status_code=429, headers=refused.headers
        )
    # Identical for known and unknown addresses (no enumeration); the look-up and the outbox
    # write run after the answer is sent, so its timing does not tell them apart either.
    response = recover_form(settings, email=post.email, done=True)
    response.background = BackgroundTask(queue_logged, state, post.email)
    return response


ROUTES: list[BaseRoute] = [
    Route("/buy/{product}", buy_page, methods=["GET"]),
    Route("/buy/{product}", buy_submit, methods=["POST"]),
    Route("/licenses/recover", recover_page, methods=["GET"]),
    Route("/licenses/recover", recover_submit, methods=["POST"]),
    Mount("/static", StaticFiles(packages=[("gateway.pages", "static")]), name="static"),
]
