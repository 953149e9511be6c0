"""The HTTP test server of simul's http tests, on loopback only.

Prints one line, "<http port> <raw port> <https port>", once every listener is
up, then serves until stdin closes (the test binary exits) or it is killed.

The aiohttp app (http and https) serves:
  /json                 a small JSON document
  /chunked              a body sent in chunks (Transfer-Encoding: chunked)
  /gzip                 a gzip-compressed body (Content-Encoding: gzip)
  /redirect/<n>         302 to /redirect/<n-1>; /redirect/0 is /json
  /loop                 302 to itself, forever
  /slow?ms=<n>          answers after n ms
  /stall?ms=<n>         sends the headers and part of the body, then waits n ms
  /large?kib=<n>&id=<k> n KiB of 'x', streamed in 64 KiB writes
  /progress?id=<k>      how many bytes /large with that id has written so far
  /status/<n>           an empty answer with status n
  /cookies              two Set-Cookie headers
  /echo                 any method: X-Method, X-Peer-Port (the client's port),
                        X-Got-<name> per request header, the body echoed
The raw listener reads one request line and answers by its path:
  /http10               an HTTP/1.0 answer without a length, ended by close
  /reset                Content-Length 100000, 1000 bytes, then a reset
"""

import asyncio
import gzip
import logging
import socket
import ssl
import struct
import sys

from aiohttp import web

JSON = b'{"hello": "world", "n": 42}'


async def json_doc(request):
    return web.Response(body=JSON, content_type="application/json")


async def chunked(request):
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    resp.content_type = "text/plain"
    await resp.prepare(request)
    for i in range(5):
        await resp.write(f"chunk {i};".encode())
        await asyncio.sleep(0.001)
    await resp.write_eof()
    return resp


async def gzipped(request):
    body = gzip.compress(b"compressed " * 1000)
    return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})


async def redirect(request):
    n = int(request.match_info["n"])
    if n <= 0:
        raise web.HTTPFound("/json")
    raise web.HTTPFound(f"/redirect/{n - 1}")


async def redirect_loop(request):
    raise web.HTTPFound("/loop")


async def slow(request):
    await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
    return web.Response(text="slow done")


async def stall(request):
    resp = web.StreamResponse(headers={"Content-Length": "20000"})
    await resp.prepare(request)
    await resp.write(b"y" * 10000)
    await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
    await resp.write(b"y" * 10000)
    return resp


PROGRESS = {}


async def large(request):
    kib = int(request.query.get("kib", "1024"))
    key = request.query.get("id", "")
    resp = web.StreamResponse(headers={"Content-Length": str(kib * 1024), "Content-Type": "application/octet-stream"})
    await resp.prepare(request)
    block = b"x" * 65536
    left = kib * 1024
    while left > 0:
        n = min(left, len(block))
        await resp.write(block[:n])
        left -= n
        PROGRESS[key] = kib * 1024 - left
    return resp


async def progress(request):
    return web.Response(text=str(PROGRESS.get(request.query.get("id", ""), 0)))


async def status(request):
    return web.Response(status=int(request.match_info["n"]), text="")


async def cookies(request):
    resp = web.Response(text="cookies")
    resp.headers.add("Set-Cookie", "a=1")
    resp.headers.add("Set-Cookie", "b=2")
    return resp


async def echo(request):
    body = await request.read()
    headers = {"X-Method": request.method, "X-Peer-Port": str(request.transport.get_extra_info("peername")[1])}
    for name, value in request.headers.items():
        headers["X-Got-" + name] = value
    return web.Response(body=body, headers=headers)


async def raw_client(reader, writer):
    try:
        line = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        path = line.split()[1].decode() if len(line.split()) > 1 else "/"
        if path == "/http10":
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"until close " * 100)
            await writer.drain()
            writer.close()
        elif path == "/reset":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000)
            await writer.drain()
            await asyncio.sleep(0.01)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
    except ConnectionError:
        pass


async def main():
    tls_dir = sys.argv[1]
    # Clients that hang up early (the cancellation tests) are expected.
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    app = web.Application(client_max_size=64 << 20)
    app.router.add_get("/json", json_doc)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/gzip", gzipped)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/loop", redirect_loop)
    app.router.add_get("/slow", slow)
    app.router.add_get("/stall", stall)
    app.router.add_get("/large", large)
    app.router.add_get("/progress", progress)
    app.router.add_get("/status/{n}", status)
    app.router.add_get("/cookies", cookies)
    app.router.add_route("*", "/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
    await site.start()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls_dir + "/localhost.pem", tls_dir + "/localhost.key")
    tls_site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx, backlog=2048)
    await tls_site.start()
    raw = await asyncio.start_server(raw_client, "127.0.0.1", 0)
    port = site._server.sockets[0].getsockname()[1]
    tls_port = tls_site._server.sockets[0].getsockname()[1]
    raw_port = raw.sockets[0].getsockname()[1]
    print(f"{port} {raw_port} {tls_port}", flush=True)
    # Serve until stdin closes: the test binary went away.
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not sys.stdin.buffer.read1(4096) else None)
    await done.wait()
    await runner.cleanup()


asyncio.run(main())
