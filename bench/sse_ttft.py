#!/usr/bin/env python3
"""Time to first token as a client sees it, which locust does not measure: USERS threads
each send streamed stories (POST /v1/stories with "stream": true) one after another for
SECONDS, and time the first `event: token` and the final `event: done` of each.

usage: sse_ttft.py URL USERS SECONDS [TOKENS]
Prints one JSON object: users, requests, errors, ttft_ms {p50,p90,p99,mean}, latency_ms
{p50,p90,p99,mean}, tokens_per_s_client (completion tokens / (done - first token)).
"""
import http.client
import json
import random
import sys
import threading
import time
from urllib.parse import urlsplit

THEMES = ["comedy", "tragedy", "sarcasm", "mystery", "romance", "sci-fi"]


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return round(v[k], 1)


def one(host, port, tokens):
    body = json.dumps({"source": "hackernews", "theme": random.choice(THEMES), "limit": 5,
                       "max_tokens": tokens, "temperature": 0.8, "stream": True})
    c = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/stories", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        c.close()
        return None
    first = None
    ntok = 0
    buf = b""
    done = False
    while not done:
        chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1024)
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            ev, buf = buf.split(b"\n\n", 1)
            if ev.startswith(b"event: token"):
                ntok += 1
                if first is None:
                    first = time.perf_counter()
            elif ev.startswith(b"event: done") or ev.startswith(b"event: error"):
                done = ev.startswith(b"event: done")
                if not done:
                    c.close()
                    return None
    end = time.perf_counter()
    c.close()
    if first is None or not done:
        return None
    return ((first - t0) * 1000, (end - t0) * 1000, ntok / max(1e-9, end - first))


def main():
    url, users, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    tokens = int(sys.argv[4]) if len(sys.argv) > 4 else 128
    u = urlsplit(url)
    stop_at = time.time() + seconds
    res, errs, lock = [], [0], threading.Lock()

    def loop():
        while time.time() < stop_at:
            try:
                x = one(u.hostname, u.port, tokens)
            except OSError:
                x = None
            with lock:
                if x is None:
                    errs[0] += 1
                else:
                    res.append(x)

    th = [threading.Thread(target=loop) for _ in range(users)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    ttft = [r[0] for r in res]
    lat = [r[1] for r in res]
    tps = [r[2] for r in res]
    out = {"users": users, "requests": len(res), "errors": errs[0],
           "ttft_ms": {"p50": pct(ttft, 50), "p90": pct(ttft, 90), "p99": pct(ttft, 99),
                       "mean": round(sum(ttft) / len(ttft), 1) if ttft else None},
           "latency_ms": {"p50": pct(lat, 50), "p90": pct(lat, 90), "p99": pct(lat, 99),
                          "mean": round(sum(lat) / len(lat), 1) if lat else None},
           "tokens_per_s_client": pct(tps, 50)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
