"""The Python side of L4: an asyncio streams echo server (uvloop with --uvloop).

Binds 127.0.0.1 on a free port, prints "PORT <n>" and echoes until killed.
With --tls=<dir>, it speaks TLS with <dir>/localhost.pem and localhost.key.
"""
import asyncio
import ssl
import sys


async def echo(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    writer.close()


async def main():
    context = None
    for arg in sys.argv[1:]:
        if arg.startswith("--tls="):
            certs = arg[len("--tls="):]
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certs + "/localhost.pem", certs + "/localhost.key")
    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if "--uvloop" in sys.argv:
        import uvloop
        uvloop.install()
    asyncio.run(main())
