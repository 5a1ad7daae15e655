"""A TCP proxy on loopback that adds a round trip and counts HTTP requests by kind.

Each chunk is held half the delay in each direction, so a request and its answer cost one
whole delay more, as a real S3 endpoint's round trip would (this kernel has no netem).

    python3 delay_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS STATS_FILE [LOG_FILE]

The counts are written to STATS_FILE as JSON after each connection closes and on SIGTERM (to
a file beside it, then renamed: a reader never sees it half written), by kind: the method,
except a listing, LIST (S3's and GCS's `list-type=2`, Azure's `comp=list`), and an Azure Blob
Batch, BATCH (`comp=batch`). Requests are read as HTTP/1.1 messages (each
head, then its body by Content-Length or chunks, skipped), so the subrequests inside a batch's
body are not counted. With LOG_FILE, one line more per request, `UNIX_TIME KIND SECONDS TARGET`:
when it reached the proxy, and how long until the first bytes of its answer came back from the
server, less the half delay the request was held (the server's time, and the proxy's; `-` if
none came), written when the answer starts (benches/buckets.rs times the deletions by it); a
batch's target is followed by ` keys=N`, the keys it deletes.
"""
import asyncio
import json
import os
import re
import signal
import sys
import time

LISTEN, UPSTREAM, DELAY, STATS = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000, sys.argv[4]
LOG = open(sys.argv[5], "a", buffering=1) if len(sys.argv) > 5 else None
REQUEST = re.compile(rb"^(GET|HEAD|PUT|POST|DELETE|OPTIONS|PATCH) (\S+) HTTP/1\.[01]$")
counts = {}


def save():
    with open(STATS + ".tmp", "w") as f:
        json.dump(counts, f)
    os.replace(STATS + ".tmp", STATS)


def kind(method, target):
    if method == "GET" and (b"list-type=2" in target or b"comp=list" in target):
        return "LIST"
    if method == "POST" and b"comp=batch" in target:
        return "BATCH"
    return method


class Requests:
    """The requests of one connection's upstream direction, counted as their heads arrive."""

    def __init__(self):
        self.pending = []  # (time, kind, target) of the requests not yet answered, in order
        self.buf = b""
        self.body = 0  # body bytes of the current request still to skip
        self.chunked = False
        self.batch = None  # the body of a batch being read (its keys are counted into the log)

    def feed(self, chunk):
        self.buf += chunk
        while True:
            if self.body:
                n = min(self.body, len(self.buf))
                if self.batch is not None:
                    self.batch += self.buf[:n]
                self.buf, self.body = self.buf[n:], self.body - n
                if self.body:
                    return
                if self.batch is not None and self.pending:
                    # Keys in it: Azure's subrequests, S3's (and GCS's) <Key> elements.
                    keys = self.batch.count(b"DELETE ") + self.batch.count(b"<Key>")
                    t, k, target = self.pending[-1]
                    self.pending[-1] = (t, k, f"{target} keys={keys}")
                self.batch = None
            if self.chunked:
                # Chunks to the terminating zero-size chunk (and the empty trailer).
                end = self.buf.find(b"\r\n0\r\n\r\n")
                if end < 0 and not self.buf.startswith(b"0\r\n\r\n"):
                    self.buf = self.buf[-6:]
                    return
                self.buf = self.buf[end + 7:] if end >= 0 else self.buf[5:]
                self.chunked = False
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buf = self.buf[:end].split(b"\r\n"), self.buf[end + 4:]
            self.batch = None
            m = REQUEST.match(head[0])
            if m:
                k = kind(m.group(1).decode(), m.group(2))
                counts[k] = counts.get(k, 0) + 1
                if LOG:
                    self.pending.append((time.time(), k, m.group(2)[:300].decode(errors="replace")))
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    self.body = int(value.strip() or 0)
                    if m and LOG and (k == "BATCH" or (k == "POST" and b"delete" in m.group(2))):
                        self.batch = b""
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    self.chunked = True


    def answer(self, chunk):
        """A chunk from the server: the oldest request is answered when one starts a status line."""
        if LOG and self.pending and chunk.startswith(b"HTTP/1."):
            t, k, target = self.pending.pop(0)
            LOG.write(f"{t:.6f} {k} {time.time() - t - DELAY / 2:.6f} {target}\n")

    def close(self):
        while LOG and self.pending:
            t, k, target = self.pending.pop(0)
            LOG.write(f"{t:.6f} {k} - {target}\n")


async def pipe(reader, writer, requests, answers):
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                break
            if requests:
                requests.feed(chunk)
            if answers:
                answers.answer(chunk)
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
    requests = Requests()
    await asyncio.gather(pipe(client_r, server_w, requests, None), pipe(server_r, client_w, None, requests))
    requests.close()
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
