"""A tiny reverse proxy for tests: `python -m tests.support.proxy --listen P --upstream Q`.

It forwards one request per connection to 127.0.0.1:Q from `--source` (another loopback
address, so the gateway can trust the proxy without trusting the client) and writes the
client's address into `X-Forwarded-For` as the deployment docs' proxies do: `append` keeps
what the client sent and adds the peer (nginx's `$proxy_add_x_forwarded_for`), `set`
replaces it with the peer (`$remote_addr`, Caddy, Traefik).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

HEAD_LIMIT = 64 * 1024


def rewrite_head(head: bytes, peer: str, mode: str) -> bytes:
    """The request head with our X-Forwarded-For and `Connection: close` (one request per
    connection, so a second request can never pass unrewritten)."""
    request_line, *lines = head.decode("latin-1").split("\r\n")
    kept, forwarded = [], []
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "x-forwarded-for":
            forwarded.append(value.strip())
        elif name.strip().lower() != "connection":
            kept.append(line)
    hops = [*forwarded, peer] if mode == "append" else [peer]
    kept += [f"X-Forwarded-For: {', '.join(hops)}", "Connection: close"]
    return ("\r\n".join([request_line, *kept]) + "\r\n\r\n").encode("latin-1")


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(ConnectionError):
            writer.close()


class Proxy:
    def __init__(self, upstream: int, source: str, mode: str) -> None:
        self.upstream, self.source, self.mode = upstream, source, mode

    async def handle(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        peer = client_out.get_extra_info("peername")[0]
        try:
            head = await client_in.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            client_out.close()
            return
        upstream_in, upstream_out = await asyncio.open_connection(
            "127.0.0.1", self.upstream, local_addr=(self.source, 0)
        )
        upstream_out.write(rewrite_head(head[:-4], peer, self.mode))
        await asyncio.gather(_pipe(client_in, upstream_out), _pipe(upstream_in, client_out))


async def serve(listen: int, proxy: Proxy) -> None:
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", listen, limit=HEAD_LIMIT)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--mode", choices=["append", "set"], default="append")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, Proxy(args.upstream, args.source, args.mode)))


if __name__ == "__main__":
    main()
