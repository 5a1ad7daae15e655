"""What aztool.py and gcstool.py share: a store's files as keys, paced uploads, downloads with the
objects' times as mtimes."""
import contextlib
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def entry(main):
    """Runs main(ENDPOINT CMD ARGS...) once, or with CMD `serve`, once a line: each line of stdin a
    JSON array (CMD ARGS...), each answer a line of stdout, {"ok", "out"}: a test's server keeps
    one of these, sparing the SDK's import (most of a second) on every chore."""
    argv = sys.argv[1:]
    if argv[1:] != ["serve"]:
        main(argv)
        return
    for line in sys.stdin:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                main([argv[0], *json.loads(line)])
            answer = {"ok": True, "out": out.getvalue()}
        except SystemExit as e:
            answer = {"ok": False, "out": f"{out.getvalue()}{e.code}"}
        except Exception as e:  # noqa: BLE001 (told to the test, which fails with it)
            answer = {"ok": False, "out": f"{out.getvalue()}{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def keyed_files(src, root):
    """Every file under src, as (key, path): ROOT/<its path under src>, sorted by key."""
    root = root.strip("/")
    out = []
    for d, _, names in os.walk(src):
        for n in names:
            path = os.path.join(d, n)
            rel = os.path.relpath(path, src)
            out.append((f"{root}/{rel}" if root else rel, path))
    return sorted(out)


def next_second():
    """Sleeps until just after the next whole second."""
    now = time.time()
    time.sleep(int(now) + 1.02 - now)


def paced_rounds(src, files):
    """The files as (wait, batch) rounds: everything but the tags' current/link first, then round n
    the n-th tag of every repository by push time (mtime of current/link), each round on a second
    of its own, so that the bucket's times (to the second) order each repository's tags as on disk."""
    tags, rest = {}, []
    for key, path in files:
        parts = path.split(os.sep)
        if parts[-2:] == ["current", "link"] and "_manifests" in parts:
            repo = os.path.dirname(path).split("/_manifests/tags/")[0]
            tags.setdefault(repo, []).append((os.stat(path).st_mtime, key, path))
        else:
            rest.append((key, path))
    rounds = [(next_second, rest)]
    for links in tags.values():
        for n, (_, key, path) in enumerate(sorted(links)):
            if len(rounds) <= n + 1:
                rounds.append((next_second, []))
            rounds[n + 1][1].append((key, path))
    return rounds


def upload_all(src, root, paced, put, workers=16):
    """Every file under src as the key ROOT/<its path>, put(key, path) `workers` at a time; paced,
    in the rounds of paced_rounds."""
    files = keyed_files(src, root)
    rounds = paced_rounds(src, files) if paced else [(lambda: None, files)]
    with ThreadPoolExecutor(workers) as pool:
        for wait, batch in rounds:
            wait()
            list(pool.map(lambda kp: put(*kp), batch))


def download_all(objects, prefix, out, fetch):
    """Writes each (key, unix time) of objects under prefix to out/<key without prefix>, its mtime
    that time; fetch(key) gives the bytes."""
    def one(obj):
        key, t = obj
        path = os.path.join(out, key[len(prefix):].lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(fetch(key))
        os.utime(path, (t, t))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, objects))
