"""Uploads to `soundalike serve` at a fixed concurrency, for BENCHMARKS.md ("serve").

python3 scripts/serve_load.py BODY CONCURRENCY SECONDS honour|hammer [URL]

BODY is a multipart/form-data body with the boundary `soundalikebench0123456789` and the file in `audio`. Each
client posts it again and again for SECONDS; on a 503 an `honour` client waits its Retry-After first, a `hammer`
client does not. Prints the uploads answered 200 per second with their p50 and p99, and the 503s' p50 and p99.
"""
import http.client
import sys
import threading
import time
import urllib.parse

body = open(sys.argv[1], "rb").read()
conc, seconds, honour = int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "honour"
url = urllib.parse.urlsplit(sys.argv[5] if len(sys.argv) > 5 else "http://127.0.0.1:8080/api/recommend")
ok, busy, fail = [], [], []
lock = threading.Lock()
end = time.time() + seconds


def client():
    while time.time() < end:
        started = time.time()
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=300)
            conn.request("POST", url.path, body,
                         {"Content-Type": "multipart/form-data; boundary=soundalikebench0123456789"})
            response = conn.getresponse()
            response.read()
            took = time.time() - started
            with lock:
                (ok if response.status == 200 else busy if response.status == 503 else fail).append(took)
            retry = response.getheader("Retry-After")
            conn.close()
            if response.status == 503 and honour:
                time.sleep(float(retry or 1))
        except Exception as error:  # a broken connection is a failure to report, not to hide
            with lock:
                fail.append(repr(error))


threads = [threading.Thread(target=client) for _ in range(conc)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


print(f"concurrency {conc}, {seconds:.0f} s: {len(ok)} answered 200 ({len(ok) / seconds:.2f}/s), "
      f"p50 {pct(ok, .5):.2f} s, p99 {pct(ok, .99):.2f} s; {len(busy)} answered 503 "
      f"(p50 {pct(busy, .5) * 1000:.1f} ms, p99 {pct(busy, .99) * 1000:.1f} ms); failed {len(fail)} {fail[:3]}")
