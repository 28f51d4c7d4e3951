#!/usr/bin/env python3
"""A small HTTP server for tests and benchmarks, on 127.0.0.1 only.

Serves files under --root, receives webhooks, and misbehaves on request:
  GET  /FILE                     a file under --root, with an ETag and a Last-Modified; a
                                 304 to an If-None-Match naming the ETag, or else to an
                                 If-Modified-Since not before the file's time
  GET  /plain/FILE               the file with no validators, never a 304
  GET  /status/CODE              answers CODE with a short body
  GET  /redirect?to=URL          302 to URL
  GET  /loop                     302 to itself, forever
  GET  /slow                     one byte a second, for up to a minute
  GET  /lie?file=FILE            claims twice the file's length, sends the file, closes
  GET  /big?mb=N                 N MiB of bytes (a JPEG signature, then zeros)
  GET  /flaky/FILE?fail=N&key=K  503 for the first N requests of key K, then the file;
       [&code=429&retry_after=S]  that code instead of 503, with a Retry-After header
  GET  /flaky-times?key=K        the times (Unix seconds) of key K's requests, as JSON
  GET  /hold/FILE?ms=N           the file after N ms; counts the /hold requests under way
  GET  /held[?reset=1]           {"now", "max"}: /hold requests under way, and the most
                                 at once since the start or the last reset
  POST /hook[?ms=N]              records the request as one JSON line in --hook-log and
                                 answers with the next of --hook-codes (the last repeats);
                                 with ms, after N ms, "done" in the line the time it answered
  POST /hook-codes?set=500,200   replaces the webhook answer sequence
Every GET's path is appended as one line to --request-log, so that a test can count what
was fetched; and to --answer-log, one JSON line a GET once answered: {"path", "status",
"if_none_match", "if_modified_since"}.
The port is printed on stdout once the server listens (--port 0 picks a free one).
"""
import argparse
import json
import os
import threading
import time
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

STATE = {"hook_codes": [200], "hook_calls": 0, "flaky": {}, "held": 0, "held_max": 0}
LOCK = threading.Lock()


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A response goes out as headers and then body: with Nagle's algorithm on, the body of
    # each answer on a kept-alive connection waits for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True
    answer, etag, validators = None, None, True    # do_GET sets them for each request

    def log_message(self, fmt, *args):
        if self.server.verbose:
            super().log_message(fmt, *args)

    def send_plain(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, conditions = self.path, {
            "if_none_match": self.headers.get("If-None-Match"),
            "if_modified_since": self.headers.get("If-Modified-Since")}
        self.answer, self.etag, self.validators = None, None, True
        with LOCK:
            with open(self.server.request_log, "a", encoding="utf-8") as f:
                f.write(self.path + "\n")
        try:
            self.answer_get()
        finally:
            with LOCK:
                with open(self.server.answer_log, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"path": path, "status": self.answer, **conditions}) + "\n")

    def send_response(self, code, message=None):
        self.answer = code
        super().send_response(code, message)

    def send_header(self, keyword, value):
        if self.validators or keyword != "Last-Modified":
            super().send_header(keyword, value)

    def end_headers(self):
        if self.etag:
            super().send_header("ETag", self.etag)
        super().end_headers()

    def serve_file(self):
        """The file at self.path, with its validators; SimpleHTTPRequestHandler answers an
        If-Modified-Since (when no If-None-Match came) and sends Last-Modified."""
        try:
            st = os.stat(self.translate_path(self.path))
        except OSError:
            return super().do_GET()
        self.etag = '"%x-%x"' % (st.st_mtime_ns, st.st_size)
        if self.headers.get("If-None-Match") == self.etag:
            return self.send_plain(304)
        return super().do_GET()

    def answer_get(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        if parts[0] == "status" and len(parts) == 2:
            return self.send_plain(int(parts[1]), b"status %s\n" % parts[1].encode())
        if url.path == "/redirect":
            return self.send_plain(302, headers=[("Location", q["to"])])
        if url.path == "/loop":
            return self.send_plain(302, headers=[("Location", "/loop")])
        if url.path == "/slow":
            return self.slow()
        if url.path == "/lie":
            return self.lie(q["file"])
        if url.path == "/big":
            return self.big(int(q.get("mb", "60")))
        if parts[0] == "flaky":
            key = q.get("key", url.path)
            with LOCK:
                times = STATE["flaky"].setdefault(key, [])
                times.append(time.time())
            if len(times) <= int(q.get("fail", "1")):
                after = [("Retry-After", q["retry_after"])] if "retry_after" in q else []
                return self.send_plain(int(q.get("code", "503")), b"try again\n", after)
            self.path = "/" + "/".join(parts[1:])
        if url.path == "/flaky-times":
            body = json.dumps(STATE["flaky"].get(q["key"], [])).encode()
            return self.send_plain(200, body, [("Content-Type", "application/json")])
        if parts[0] == "hold":
            return self.hold("/" + "/".join(parts[1:]), int(q.get("ms", "500")))
        if parts[0] == "plain":
            self.validators = False
            del self.headers["If-Modified-Since"]
            self.path = "/" + "/".join(parts[1:])
            return super().do_GET()
        if url.path == "/held":
            with LOCK:
                body = json.dumps({"now": STATE["held"], "max": STATE["held_max"]}).encode()
                if "reset" in q:
                    STATE["held_max"] = STATE["held"]
            return self.send_plain(200, body, [("Content-Type", "application/json")])
        return self.serve_file()

    def hold(self, path, ms):
        with LOCK:
            STATE["held"] += 1
            STATE["held_max"] = max(STATE["held_max"], STATE["held"])
        time.sleep(ms / 1000)
        # Counted out before the answer goes: once the client has it, it may start the
        # next request at once, and that must not overlap this one in the count.
        with LOCK:
            STATE["held"] -= 1
        self.path = path
        return super().do_GET()

    def slow(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "60")
        self.end_headers()
        try:
            for _ in range(60):
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass

    def lie(self, name):
        with open(os.path.join(self.server.root, name), "rb") as f:
            data = f.read()
        self.send_response(200)
        self.send_header("Content-Length", str(2 * len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def big(self, mb):
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(mb << 20))
        self.end_headers()
        chunk = b"\0" * (1 << 20)
        try:
            self.wfile.write(b"\xff\xd8\xff\xe0" + chunk[4:])
            for _ in range(mb - 1):
                self.wfile.write(chunk)
        except OSError:
            pass

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if url.path == "/hook-codes":
            q = dict(urllib.parse.parse_qsl(url.query))
            with LOCK:
                STATE["hook_codes"] = [int(c) for c in q["set"].split(",")]
                STATE["hook_calls"] = 0
            return self.send_plain(204)
        if url.path != "/hook":
            return self.send_plain(404)
        record = {"time": time.time(), "path": self.path,
                  "headers": {k.lower(): v for k, v in self.headers.items()},
                  "body": body.decode("utf-8", "replace")}
        q = dict(urllib.parse.parse_qsl(url.query))
        if "ms" in q:
            time.sleep(int(q["ms"]) / 1000)
            record["done"] = time.time()
        with LOCK:
            codes = STATE["hook_codes"]
            code = codes[min(STATE["hook_calls"], len(codes) - 1)]
            STATE["hook_calls"] += 1
            record["answer"] = code
            with open(self.server.hook_log, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        self.send_plain(code, b"{}", headers=[("Content-Type", "application/json")])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", default=".")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--hook-log", default=os.devnull)
    p.add_argument("--hook-codes", default="200")
    p.add_argument("--request-log", default=os.devnull)
    p.add_argument("--answer-log", default=os.devnull)
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args()
    STATE["hook_codes"] = [int(c) for c in a.hook_codes.split(",")]
    root = os.path.abspath(a.root)

    class RootHandler(Handler):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=root, **kw)

    # A listen backlog as a real server's: socketserver's 5 drops the SYNs of a burst of
    # connections (fetchimg opens up to 8 to one host), each then retried a second later.
    class Server(ThreadingHTTPServer):
        request_queue_size = 128

    srv = Server(("127.0.0.1", a.port), RootHandler)
    srv.daemon_threads = True
    srv.root, srv.hook_log, srv.verbose = root, a.hook_log, a.verbose
    srv.request_log, srv.answer_log = a.request_log, a.answer_log
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
