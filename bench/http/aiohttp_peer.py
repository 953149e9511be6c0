"""simul::http's benchmark peers, run by http_bench on loopback.

  aiohttp_peer.py serve
      an aiohttp server whose /slow10 handler sleeps 10 ms; prints its port,
      serves until stdin closes.
  aiohttp_peer.py get URL COUNT INFLIGHT [CAFILE]
      COUNT GETs of URL with aiohttp.ClientSession, at most INFLIGHT at once;
      prints "<wall seconds> <cpu seconds> <bytes>" for the requests alone.
"""

import asyncio
import ssl
import sys
import time

import aiohttp
from aiohttp import web


async def serve():
    async def slow10(request):
        await asyncio.sleep(0.010)
        return web.Response(body=b'{"hello": "world", "n": 42}', content_type="application/json")

    app = web.Application()
    app.router.add_get("/slow10", slow10)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not sys.stdin.buffer.read1(4096) else None)
    await done.wait()
    await runner.cleanup()


async def get(url, count, inflight, cafile):
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    limit = asyncio.Semaphore(inflight)
    total = 0

    async def one(session):
        nonlocal total
        async with limit:
            async with session.get(url) as r:
                body = await r.read()
                r.raise_for_status()
                total += len(body)

    connector = aiohttp.TCPConnector(limit=inflight, ssl=ctx)
    async with aiohttp.ClientSession(connector=connector) as session:
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(session) for _ in range(count)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{wall} {cpu} {total}", flush=True)


if sys.argv[1] == "serve":
    asyncio.run(serve())
else:
    asyncio.run(get(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None))
