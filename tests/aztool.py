"""Container chores for the Azure tests against Azurite, with azure-storage-blob (in target/s3venv).

    aztool.py ENDPOINT mkcontainer CONTAINER
    aztool.py ENDPOINT keys CONTAINER                  one key a line, sorted
    aztool.py ENDPOINT upload DIR CONTAINER ROOT [--paced]
                                                       every file under DIR as ROOT/<its path>; with
                                                       --paced, the tags of each repository in their
                                                       push order (mtime of current/link), the n-th of
                                                       every repository on a second of its own
    aztool.py ENDPOINT download CONTAINER ROOT DIR     blobs under ROOT into DIR, mtime = Last-Modified
    aztool.py ENDPOINT put CONTAINER KEY FILE
    aztool.py ENDPOINT delete CONTAINER KEY
    aztool.py ENDPOINT lease CONTAINER KEY             an infinite lease: a DELETE without it fails
    aztool.py ENDPOINT breaklease CONTAINER KEY        the lease broken at once
    aztool.py ENDPOINT serve                           the commands above, a JSON array a line on
                                                       stdin, an answer a line ({"ok", "out"})

ENDPOINT is the blob service's, http://127.0.0.1:PORT; the account is Azurite's well-known one.
"""
import os
import sys

from azure.storage.blob import BlobLeaseClient, BlobServiceClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emutool import download_all, entry, upload_all  # noqa: E402

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def main(argv):
    endpoint, cmd, *args = argv
    conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={endpoint}/{ACCOUNT};")
    svc = BlobServiceClient.from_connection_string(conn)

    def put(container, key, data):
        svc.get_blob_client(container, key).upload_blob(data, overwrite=True)

    if cmd == "mkcontainer":
        svc.create_container(args[0])
    elif cmd == "keys":
        for key in sorted(b.name for b in svc.get_container_client(args[0]).list_blobs()):
            print(key)
    elif cmd == "upload":
        src, container, root = args[:3]
        upload_all(src, root, "--paced" in args[3:],
                   lambda key, path: put(container, key, open(path, "rb").read()))
    elif cmd == "download":
        container, root, out = args
        c = svc.get_container_client(container)
        prefix = root.strip("/") + "/" if root.strip("/") else ""
        blobs = [(b.name, b.last_modified.timestamp()) for b in c.list_blobs(name_starts_with=prefix)]
        download_all(blobs, prefix, out, lambda key: c.download_blob(key).readall())
    elif cmd == "put":
        container, key, path = args
        put(container, key, open(path, "rb").read())
    elif cmd == "delete":
        container, key = args
        svc.get_blob_client(container, key).delete_blob()
    elif cmd == "lease":
        container, key = args
        svc.get_blob_client(container, key).acquire_lease(lease_duration=-1)
    elif cmd == "breaklease":
        container, key = args
        BlobLeaseClient(svc.get_blob_client(container, key)).break_lease(lease_break_period=0)
    else:
        sys.exit(f"unknown command {cmd}")


entry(main)
