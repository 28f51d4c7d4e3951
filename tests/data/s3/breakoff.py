#!/usr/bin/env python3
"""Serves one file for any GET, on 127.0.0.1: the first answer breaks off halfway (it
claims the whole length, sends half, closes); later ones honour Range.  Prints the port,
then logs each request's Range header (or "-") on stderr, one a line.
Usage: breakoff.py FILE"""
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

DATA = open(sys.argv[1], "rb").read()
SEEN = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        rng = self.headers.get("Range")
        print(rng or "-", file=sys.stderr, flush=True)
        SEEN[0] += 1
        if SEEN[0] == 1:
            self.send_response(200)
            self.send_header("Content-Length", str(len(DATA)))
            self.end_headers()
            self.wfile.write(DATA[: len(DATA) // 2])
            self.close_connection = True
            return
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        self.send_response(206 if rng else 200)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        self.send_header("Content-Length", str(len(DATA) - start))
        self.end_headers()
        self.wfile.write(DATA[start:])


srv = HTTPServer(("127.0.0.1", 0), Handler)
print(srv.server_address[1], flush=True)
srv.serve_forever()
