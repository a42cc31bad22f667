"""`soundalike serve`'s memory under hostile bursts, for BENCHMARKS.md ("serve"; issue 33).

python3 scripts/serve_memory.py BIN INDEX WEIGHTS PCA WORKDIR [ROUNDS]

Starts `BIN serve` with its default limits and the given weights, and for each burst resets the server's peak
RSS (`/proc/PID/clear_refs`), sends the burst, and prints the peak during it and the RSS once it is idle again
(3 s later). The bursts, each sent at once from as many threads:
- chunked: 50 uploads of a 3-minute 44.1 kHz stereo WAV (31.8 MB) with `Transfer-Encoding: chunked`;
- sized: the same 50 uploads with a Content-Length;
- json: 16 JSON embeddings of about 3.9 MB (the default --max-json is 4,000 KB) and 8 of 49 MB (refused, 413);
- flac: 16 uploads of a FLAC of 8 channels at 192 kHz claiming 599 s (made by sox, silent, about 200 KB);
- slow: 4 uploads trickling a byte every 5 s while 4 real uploads of 10 s are sent (their statuses printed).
WORKDIR keeps the generated files between runs.
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import wave

BIN, INDEX, WEIGHTS, PCA, WORK = sys.argv[1:6]
ROUNDS = int(sys.argv[6]) if len(sys.argv) > 6 else 1
PORT = 8187
BOUNDARY = "soundalikebench0123456789"


def wav_file(path, seconds, rate=44100, channels=2):
    if os.path.exists(path):
        return
    import math
    frames = bytearray()
    one = bytearray()
    for i in range(rate):
        value = int(8000 * math.sin(2 * math.pi * 440 * i / rate))
        one += value.to_bytes(2, "little", signed=True) * channels
    for _ in range(int(seconds)):
        frames += one
    with wave.open(path, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


def form(path):
    data = open(path, "rb").read()
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"{os.path.basename(path)}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def status_of(sock):
    sock.settimeout(600)
    got = b""
    while b"\r\n" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    try:
        return int(got.split(b" ")[1])
    except (IndexError, ValueError):
        return 0


def post_raw(body, content_type, chunked, path="/api/recommend", trickle=None):
    sock = socket.create_connection(("127.0.0.1", PORT))
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n{length}\r\n"
                 "Connection: close\r\n\r\n".encode())
    try:
        if trickle:
            for i in range(trickle):
                sock.sendall(body[i:i + 1])
                time.sleep(5)
        elif chunked:
            for at in range(0, len(body), 65536):
                piece = body[at:at + 65536]
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(body)
    except OSError:
        pass
    status = status_of(sock)
    sock.close()
    return status


def rss(pid):
    fields = {}
    for line in open(f"/proc/{pid}/status"):
        name, _, value = line.partition(":")
        fields[name] = value.split()[0] if value.split() else "0"
    return int(fields["VmRSS"]) / 1024, int(fields["VmHWM"]) / 1024


def burst(pid, name, jobs):
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")
    before, _ = rss(pid)
    statuses = []
    lock = threading.Lock()
    started = time.time()

    def run(job):
        status = job()
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - started
    _, peak = rss(pid)
    time.sleep(3)
    idle, _ = rss(pid)
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    print(f"{name:8} before {before:7.0f} MB  peak {peak:7.0f} MB  idle after {idle:7.0f} MB  "
          f"{took:6.1f} s  statuses {counts}", flush=True)


def main():
    os.makedirs(WORK, exist_ok=True)
    song = os.path.join(WORK, "song180.wav")
    wav_file(song, 180)
    short = os.path.join(WORK, "song10.wav")
    wav_file(short, 10)
    flac = os.path.join(WORK, "hostile.flac")
    if not os.path.exists(flac):
        subprocess.run(["sox", "-D", "-n", "-r", "192000", "-c", "8", "-b", "16", flac, "trim", "0", "599"], check=True)
    big_form, short_form, flac_form = form(song), form(short), form(flac)
    multipart = f"multipart/form-data; boundary={BOUNDARY}"
    row = [round(i + 0.123456, 6) for i in range(128)]
    rows_ok = int(3_900_000 / (len(json.dumps(row)) + 2))
    json_ok = json.dumps({"embedding": [row] * rows_ok, "k": 5}).encode()
    json_big = json.dumps({"embedding": [row] * 40000, "k": 5}).encode()
    print(f"files: wav {len(big_form) / 1e6:.1f} MB, json {len(json_ok) / 1e6:.2f} and {len(json_big) / 1e6:.1f} MB, "
          f"flac {len(flac_form) / 1e3:.0f} KB", flush=True)
    for round_ in range(ROUNDS):
        server = subprocess.Popen([BIN, "serve", "--index", INDEX, "--weights", WEIGHTS, "--pca", PCA,
                                   "--listen", f"127.0.0.1:{PORT}", "-q"], stderr=subprocess.PIPE)
        server.stderr.readline()
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        # Warm: one upload, so that the network's working memory is in the baseline.
        post_raw(short_form, multipart, False)
        time.sleep(1)
        print(f"round {round_ + 1}: idle after one upload {rss(server.pid)[0]:.0f} MB", flush=True)
        burst(server.pid, "chunked", [lambda: post_raw(big_form, multipart, True)] * 50)
        burst(server.pid, "sized", [lambda: post_raw(big_form, multipart, False)] * 50)
        burst(server.pid, "json", [lambda: post_raw(json_ok, "application/json", False)] * 16
              + [lambda: post_raw(json_big, "application/json", False)] * 8)
        burst(server.pid, "flac", [lambda: post_raw(flac_form, multipart, False)] * 16)
        burst(server.pid, "slow", [lambda: post_raw(big_form, multipart, False, trickle=6)] * 4
              + [lambda: (time.sleep(1), post_raw(short_form, multipart, False))[1]] * 4)
        server.terminate()
        server.wait(timeout=60)


main()
