"""Bucket chores for the Google Cloud Storage tests against fake-gcs-server, through its JSON API
(its XML API takes no plain PUT), with requests (in target/s3venv).

    gcstool.py ENDPOINT mkbucket BUCKET
    gcstool.py ENDPOINT keys BUCKET                    one key a line, sorted
    gcstool.py ENDPOINT upload DIR BUCKET ROOT [--paced]
                                                       every file under DIR as ROOT/<its path>
                                                       (--paced: as aztool.py's)
    gcstool.py ENDPOINT download BUCKET ROOT DIR       objects under ROOT into DIR, mtime = the
                                                       object's time to the second (what Last-Modified
                                                       and the XML listing give)
    gcstool.py ENDPOINT put BUCKET KEY FILE [CONTENT_TYPE]
    gcstool.py ENDPOINT delete BUCKET KEY
    gcstool.py ENDPOINT serve                          the commands above, a JSON array a line on
                                                       stdin, an answer a line ({"ok", "out"})
"""
import datetime
import os
import sys
import urllib.parse

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emutool import download_all, entry, upload_all  # noqa: E402


def main(argv):
    endpoint, cmd, *args = argv
    http = requests.Session()

    def check(r):
        if r.status_code >= 300:
            sys.exit(f"{r.request.method} {r.url}: {r.status_code} {r.text}")
        return r

    def obj(bucket, key):
        return f"{endpoint}/storage/v1/b/{bucket}/o/{urllib.parse.quote(key, safe='')}"

    def put(bucket, key, data, content_type="application/octet-stream"):
        check(http.post(f"{endpoint}/upload/storage/v1/b/{bucket}/o",
                        params={"uploadType": "media", "name": key}, data=data,
                        headers={"Content-Type": content_type}))

    def objects(bucket, prefix=""):
        token = None
        while True:
            params = {"prefix": prefix, "maxResults": "1000"}
            if token:
                params["pageToken"] = token
            page = check(http.get(f"{endpoint}/storage/v1/b/{bucket}/o", params=params)).json()
            yield from page.get("items", [])
            token = page.get("nextPageToken")
            if not token:
                return

    if cmd == "mkbucket":
        check(http.post(f"{endpoint}/storage/v1/b", params={"project": "test"}, json={"name": args[0]}))
    elif cmd == "keys":
        for key in sorted(o["name"] for o in objects(args[0])):
            print(key)
    elif cmd == "upload":
        src, bucket, root = args[:3]
        upload_all(src, root, "--paced" in args[3:],
                   lambda key, path: put(bucket, key, open(path, "rb").read()), 8)
    elif cmd == "download":
        bucket, root, out = args
        prefix = root.strip("/") + "/" if root.strip("/") else ""

        def seconds(o):
            t = datetime.datetime.fromisoformat(o["updated"].replace("Z", "+00:00"))
            return float(int(t.timestamp()))

        found = [(o["name"], seconds(o)) for o in objects(bucket, prefix)]
        download_all(found, prefix, out, lambda key: check(requests.get(obj(bucket, key), params={"alt": "media"})).content)
    elif cmd == "put":
        bucket, key, path, *content_type = args
        put(bucket, key, open(path, "rb").read(), *content_type)
    elif cmd == "delete":
        bucket, key = args
        check(http.delete(obj(bucket, key)))
    else:
        sys.exit(f"unknown command {cmd}")


entry(main)
