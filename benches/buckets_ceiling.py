"""An emulator's own rate of deletions, without regsweep and without added delay: N small keys
written (untimed), then deleted as regsweep deletes them on that server (timed), keys a second.

    buckets_ceiling.py azurite ENDPOINT N    Blob Batch requests of 256 deletions, 8 in flight
                                             (azure-storage-blob's delete_blobs); before that, for
                                             comparison, one Delete Blob a key, 32 in flight
    buckets_ceiling.py fakegcs ENDPOINT N    one JSON API DELETE a key, 32 in flight (what
                                             regsweep's fallback sends, and what the tests'
                                             bridge sends for each key of a multi-object delete,
                                             there one after another)

ENDPOINT is the server's own (not a proxy's). Run by benches/buckets.rs (`--ceiling N`) with
target/s3venv's Python.
"""
import sys
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

server, endpoint, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
keys = [f"ceiling/blobs/sha256/{i % 256:02x}/{i:064x}/data" for i in range(n)]


def chunks(seq, size):
    return [seq[i:i + size] for i in range(0, len(seq), size)]


if server == "azurite":
    from azure.storage.blob import BlobServiceClient

    account = "devstoreaccount1"
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    svc = BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};BlobEndpoint={endpoint}/{account};")
    container = svc.get_container_client("ceiling")
    container.create_container()

    def fill():
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: container.upload_blob(k, b"x" * 100, overwrite=True), keys))

    # For comparison, first one Delete Blob a key, 32 in flight (what regsweep sends where an
    # account takes no batch).
    fill()
    start = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: container.delete_blob(k), keys))
    took = time.monotonic() - start
    print(f"azurite, one Delete Blob a key: {n / took:.0f} a second")
    fill()
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda batch: container.delete_blobs(*batch), chunks(keys, 256)))
    took = time.monotonic() - start
    left = sum(1 for _ in container.list_blobs())
elif server == "fakegcs":
    import requests

    http = requests.Session()
    http.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=32))
    http.post(f"{endpoint}/storage/v1/b", params={"project": "test"}, json={"name": "ceiling"}).raise_for_status()

    def put(k):
        http.post(f"{endpoint}/upload/storage/v1/b/ceiling/o", params={"uploadType": "media", "name": k},
                  data=b"x" * 100, headers={"Content-Type": "application/octet-stream"}).raise_for_status()

    def delete(k):
        http.delete(f"{endpoint}/storage/v1/b/ceiling/o/{urllib.parse.quote(k, safe='')}").raise_for_status()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, keys))
    start = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(delete, keys))
    took = time.monotonic() - start
    left = len(http.get(f"{endpoint}/storage/v1/b/ceiling/o").json().get("items", []))
else:
    sys.exit(f"unknown server {server}")
print(f"{server}: {n} keys deleted in {took:.2f} s: {n / took:.0f} a second ({left} left)")
