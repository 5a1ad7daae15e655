"""A TCP proxy on loopback that adds a round trip and counts HTTP requests by method.

Each chunk is held half the delay in each direction, so a request and its answer cost one
whole delay more, as a real S3 endpoint's round trip would (this kernel has no netem).

    python3 delay_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS STATS_FILE

The counts (requests by method, LIST told apart from GET by `list-type=2`) are written to
STATS_FILE as JSON after each connection closes and on SIGTERM.
"""
import asyncio
import json
import re
import signal
import sys

LISTEN, UPSTREAM, DELAY, STATS = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000, sys.argv[4]
REQUEST = re.compile(rb"(?:^|\r\n)(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/1\.[01]\r\n")
counts = {}


def save():
    with open(STATS, "w") as f:
        json.dump(counts, f)


def count(chunk):
    for m in REQUEST.finditer(chunk):
        method, target = m.group(1).decode(), m.group(2)
        if method == "GET" and b"list-type=2" in target:
            method = "LIST"
        counts[method] = counts.get(method, 0) + 1


async def pipe(reader, writer, upstream):
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            if upstream:
                count(chunk)
            await asyncio.sleep(DELAY / 2)
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def handle(client_r, client_w):
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", UPSTREAM)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, server_w, True), pipe(server_r, client_w, False))
    save()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN, limit=1 << 20)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with server:
        await stop
    save()


asyncio.run(main())
