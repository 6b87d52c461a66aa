"""A model server that listens at once but answers /health 503 until its
model has loaded (LOAD_SECONDS, default 60), logging every request the way
http.server does. Used to count the readiness probes Ember makes."""
import os, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

LOADED_AT = time.monotonic() + float(os.environ.get("LOAD_SECONDS", "60"))

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if time.monotonic() >= LOADED_AT else 503
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        self.do_GET()

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
