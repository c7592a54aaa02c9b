"""`btcpay-python` plumbing for legacy mode: a client whose requests time out, errors
translated (and the merchant token scrubbed from them and from urllib3's logs), and pairing.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from btcpay import BTCPayClient, crypto

from providers.errors import ProviderRejected, ProviderUnavailable

log = logging.getLogger("providers.btcpay.legacy")

_PAIRING_CODE = re.compile(r"^[A-Za-z0-9]{7}$")
_DEFAULT_TIMEOUT = 20.0


class PairingError(ValueError):
    """Pairing cannot proceed (bad code, files already present)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacyPairing:
    key_file: Path
    token_file: Path
    # The client id (SIN) BTCPay shows next to the token on the Access Tokens page.
    client_id: str
    facade: str


class _TimeoutSession(requests.Session):
    """`btcpay-python` never passes a timeout; a hung BTCPay must not pin a thread forever."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)


def make_client(host: str, pem: str, tokens: dict[str, str] | None, timeout: float) -> Any:
    client = BTCPayClient(host=host.rstrip("/"), pem=pem, tokens=tokens)
    session = _TimeoutSession(timeout)
    session.headers.update(client.s.headers)
    session.verify = client.s.verify
    client.s = session
    return client


_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s'\"]+", re.IGNORECASE)


def scrub(text: str, *secrets: str) -> str:
    """`text` without the merchant token: btcpay-python signs GETs with `?token=<merchant
    token>` in the URL, and requests' `raise_for_status()` quotes that URL in its message."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


class _ScrubTokens(logging.Filter):
    """urllib3 logs every request line at DEBUG, `?token=<merchant token>` included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message.lower():
            record.msg, record.args = scrub(message), None
        return True


_URLLIB3_SCRUB = _ScrubTokens()


def scrub_urllib3_logs() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if _URLLIB3_SCRUB not in logger.filters:
        logger.addFilter(_URLLIB3_SCRUB)


def translate(exc: Exception, what: str, *secrets: str) -> Exception:
    """requests/btcpay-python errors -> our retriable/permanent errors, token scrubbed."""
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        if status >= 500 or status in (408, 429):
            return ProviderUnavailable(f"BTCPay answered {status} to {what}")
        detail = scrub(str(exc), *secrets)[:300]
        return ProviderRejected(f"BTCPay refused {what} ({status}): {detail}")
    if isinstance(exc, requests.RequestException):
        return ProviderUnavailable(f"BTCPay unreachable for {what}: {type(exc).__name__}")
    if isinstance(exc, ValueError | KeyError | IndexError | TypeError):
        detail = scrub(str(exc), *secrets)[:300]
        return ProviderRejected(f"BTCPay gave an unusable answer to {what}: {detail}")
    return exc


def _write_private(path: Path, data: str, *, force: bool) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        # An existing file overwritten with force keeps its old mode otherwise.
        os.fchmod(fd, 0o600)
        os.write(fd, data.encode("utf-8"))
    finally:
        os.close(fd)


def pair_legacy(
    host: str,
    pairing_code: str,
    key_file: Path,
    token_file: Path,
    *,
    force: bool = False,
    timeout: float = _DEFAULT_TIMEOUT,
) -> LegacyPairing:
    """Pair with BTCPay's legacy API: new private key + merchant token, both stored 0600.

    `pairing_code` is the 7-character code from Store → Settings → Access Tokens. Synchronous
    (call it from the CLI, or via a worker thread). Raises `PairingError`,
    `ProviderUnavailable` or `ProviderRejected`; writes nothing unless pairing succeeded.
    """
    code = pairing_code.strip()
    if not _PAIRING_CODE.match(code):
        raise PairingError("the pairing code must be exactly 7 letters or digits")
    if not force:
        present = [str(p) for p in (key_file, token_file) if p.exists()]
        if present:
            raise PairingError(
                f"refusing to overwrite {', '.join(present)} (pass force=True / --force)"
            )
    pem: str = crypto.generate_privkey()
    client = make_client(host, pem, None, timeout)
    try:
        tokens: dict[str, str] = client.pair_client(code)
    except Exception as exc:
        raise translate(exc, "pairing") from exc
    facade, token = next(iter(tokens.items()))
    _write_private(key_file, pem, force=force)
    _write_private(token_file, json.dumps({facade: token}) + "\n", force=force)
    log.info("btcpay legacy pairing stored key %s and %s token %s", key_file, facade, token_file)
    return LegacyPairing(
        key_file=key_file, token_file=token_file, client_id=client.client_id, facade=facade
    )
