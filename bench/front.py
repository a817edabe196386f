"""A tiny front server for the downloads benchmark, standing in for nginx where none is installed.

``python -m bench.front PORT UPSTREAM PREFIX ROOT``: proxies every request to gunicorn at ``UPSTREAM``
(asyncio, one process); an answer carrying ``X-Accel-Redirect: PREFIX<name>`` is replaced by the file
``ROOT/<name>`` sent from this process (sendfile), with the app's ``Content-Disposition``,
``Content-Type`` and ``Cache-Control``, the way nginx's ``internal`` location does it. Loopback only; not
a production server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer"}
KEPT = ("Content-Disposition", "Content-Type", "Cache-Control")


def make_app(upstream: str, prefix: str, root: Path) -> web.Application:
    async def start(app: web.Application) -> None:
        app["session"] = ClientSession(
            connector=TCPConnector(limit=200),
            timeout=ClientTimeout(total=None, sock_read=120),
            auto_decompress=False,
            cookie_jar=None,
        )

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP and k.lower() != "host"}
        headers["X-Forwarded-For"] = request.remote or "127.0.0.1"
        body = await request.read()
        async with request.app["session"].request(
            request.method, upstream + request.rel_url.raw_path_qs, headers=headers, data=body, allow_redirects=False
        ) as up:
            accel = up.headers.get("X-Accel-Redirect")
            if accel is not None:
                name = accel.removeprefix(prefix)
                if not accel.startswith(prefix) or "/" in name or name.startswith("."):
                    return web.Response(status=404)
                await up.read()
                kept = {k: up.headers[k] for k in KEPT if k in up.headers}
                return web.FileResponse(root / name, headers=kept)
            out = web.StreamResponse(status=up.status)
            for key, value in up.headers.items():
                if key.lower() not in HOP:
                    out.headers.add(key, value)
            await out.prepare(request)
            async for chunk in up.content.iter_chunked(1 << 16):
                await out.write(chunk)
            await out.write_eof()
            return out

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


if __name__ == "__main__":
    port, upstream, prefix, root = sys.argv[1:5]
    web.run_app(make_app(upstream, prefix, Path(root)), host="127.0.0.1", port=int(port), print=None, backlog=2048)
