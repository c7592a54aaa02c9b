"""Web origins (`scheme://host[:port]`) as the settings name them and as browsers send them.

One spelling for comparisons: scheme and host lower-cased, the default port dropped, an IPv6
host in brackets. `origin_of` reduces any http(s) URL to it (a `Referer`, the public URL);
`canonical_origin` accepts only an origin, as a setting must be one (`origin_aliases`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, canonical; None if it has none."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


def canonical_origin(value: str) -> str:
    """`value` in canonical spelling; ValueError, saying why, when it is not just an origin."""
    origin = origin_of(value)
    if origin is None:
        raise ValueError(f"{value!r} is not an origin: write scheme://host[:port] (http or https)")
    parts = urlsplit(value.strip())
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{value!r} is not an origin: no user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in value:
        raise ValueError(f"{value!r} is not an origin: no path, query or fragment")
    return origin
