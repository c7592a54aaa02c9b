"""Provider errors, translated at the boundary (`raise ... from exc`).

ProviderError
├── WebhookSignatureError   bad/missing signature: reject, store nothing      -> 400
├── WebhookPayloadError     verified but unusable payload                     -> 400
├── ProviderUnavailable     retriable: network error, 5xx, timeout, 429       -> 503
└── ProviderRejected        permanent: the provider refused our request       -> 502
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base of every error a provider raises."""


class WebhookSignatureError(ProviderError):
    """The webhook's signature is missing, malformed, stale or does not match."""


class WebhookPayloadError(ProviderError):
    """The webhook verified but its payload is not what the provider documents."""


class ProviderUnavailable(ProviderError):
    """Retriable: the provider could not be reached or answered with a transient error."""


class ProviderRejected(ProviderError):
    """Permanent: the provider refused the request (bad key, validation error, 4xx)."""
