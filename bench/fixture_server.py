#!/usr/bin/env python3
"""Serves ../shared/data/trends per its MANIFEST.json on 127.0.0.1 for load runs and manual
tries, so trendstory never reaches the internet in a benchmark. The C fixture server in
tests/fixture_server.c does the same for the test binaries (with fault injection); this one
only answers the manifest's plain routes: method and path equal, every query pair of the
route present in the request, the route with most pairs wins.

usage: fixture_server.py DATA_TRENDS_DIR [PORT]   (PORT 0 = any; prints "fixture on URL")
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


def load(dir_):
    with open(os.path.join(dir_, "MANIFEST.json"), encoding="utf-8") as f:
        routes = json.load(f)["routes"]
    out = []
    for r in routes:
        body = b""
        if r.get("fixture"):
            with open(os.path.join(dir_, r["fixture"]), "rb") as f:
                body = f.read()
        pairs = set(parse_qsl(r.get("query") or "", keep_blank_values=True))
        out.append((r.get("method", "GET"), r["path"], pairs, int(r.get("status", 200)),
                    r.get("content_type"), body))
    return out


def main():
    dir_ = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    routes = load(dir_)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            u = urlsplit(self.path)
            q = set(parse_qsl(u.query, keep_blank_values=True))
            best = None
            for r in routes:
                if r[0] == "GET" and r[1] == u.path and r[2] <= q:
                    if best is None or len(r[2]) > len(best[2]):
                        best = r
            if best is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(best[3])
            if best[4]:
                self.send_header("Content-Type", best[4])
            self.send_header("Content-Length", str(len(best[5])))
            self.end_headers()
            self.wfile.write(best[5])

        def log_message(self, fmt, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", port), H)
    print(f"fixture on http://127.0.0.1:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
