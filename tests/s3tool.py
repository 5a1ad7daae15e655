"""Bucket chores for the object-storage tests, with boto3 (moto's dependency, in target/s3venv).

    s3tool.py ENDPOINT mkbucket BUCKET
    s3tool.py ENDPOINT keys BUCKET                  one key a line, sorted
    s3tool.py ENDPOINT copy SRC DST                 every object, server-side
    s3tool.py ENDPOINT download BUCKET PREFIX DIR   objects under PREFIX into DIR, mtime = LastModified
    s3tool.py ENDPOINT upload DIR BUCKET ROOT [--paced]
                                                    every file under DIR as the key ROOT/<its path>;
                                                    --paced, the tags of each repository in their
                                                    push order a second apart (emutool.py)
    s3tool.py ENDPOINT put BUCKET KEY FILE
    s3tool.py ENDPOINT delete BUCKET KEY
    s3tool.py ENDPOINT serve                        the commands above, a JSON array a line on stdin,
                                                    an answer a line on stdout: {"ok", "out"}
    s3tool.py ENDPOINT splitpush BUCKET KEY1 KEY2 FILE
                                                    KEY1 late in a second, KEY2 early in the next,
                                                    returns early in the second after
"""
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emutool import upload_all  # noqa: E402


def run(s3, cmd, args, out):
    """One command; what it prints goes to `out`."""

    def objects(bucket, prefix=""):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    if cmd == "mkbucket":
        s3.create_bucket(Bucket=args[0])
    elif cmd == "versioning":
        s3.put_bucket_versioning(Bucket=args[0], VersioningConfiguration={"Status": "Enabled"})
    elif cmd == "keys":
        for key in sorted(o["Key"] for o in objects(args[0])):
            print(key, file=out)
    elif cmd == "copy":
        src, dst = args

        def copy(o):
            s3.copy_object(Bucket=dst, Key=o["Key"], CopySource={"Bucket": src, "Key": o["Key"]})
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(copy, objects(src)))
    elif cmd == "download":
        bucket, prefix, to = args

        def download(o):
            path = os.path.join(to, o["Key"][len(prefix):].lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, o["Key"], path)
            t = o["LastModified"].timestamp()
            os.utime(path, (t, t))
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(download, objects(bucket, prefix)))
    elif cmd == "upload":
        src, bucket, root = args[:3]
        upload_all(src, root, "--paced" in args[3:], lambda key, path: s3.upload_file(path, bucket, key))
    elif cmd == "put":
        bucket, key, path = args
        s3.upload_file(path, bucket, key)
    elif cmd == "delete":
        bucket, key = args
        s3.delete_object(Bucket=bucket, Key=key)
    elif cmd == "splitpush":
        bucket, first, second_key, path = args
        body = open(path, "rb").read()

        s3.head_bucket(Bucket=bucket)  # the connection, opened before the timed writes
        second = int(time.time()) + 1  # S-1 below

        def until(t):
            time.sleep(max(0.0, t - time.time()))

        until(second + 0.85)
        s3.put_object(Bucket=bucket, Key=first, Body=body)
        until(second + 1.05)
        s3.put_object(Bucket=bucket, Key=second_key, Body=body)
        until(second + 2.1)
    else:
        raise ValueError(f"unknown command {cmd}")


def main():
    endpoint, cmd, *args = sys.argv[1:]
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1", config=Config(max_pool_connections=32))
    if cmd != "serve":
        run(s3, cmd, args, sys.stdout)
        return
    # One command a line (a JSON array), one answer a line ({"ok", "out"}): a test's server
    # keeps one of these, sparing boto3's start-up (a second under load) on every chore.
    for line in sys.stdin:
        out = io.StringIO()
        try:
            cmd, *args = json.loads(line)
            run(s3, cmd, args, out)
            answer = {"ok": True, "out": out.getvalue()}
        except Exception as e:  # noqa: BLE001 (told to the test, which fails with it)
            answer = {"ok": False, "out": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


main()
