#!/usr/bin/env python3
"""A webhook receiver for `oapkg watch --notify` / `oapkg apply --notify`
that checks every notification's signature before trusting it.

oapkg signs each POST when OAPKG_NOTIFY_SECRET is set in its environment:

    X-Oapkg-Timestamp: T             (Unix seconds when the POST was sent)
    X-Oapkg-Signature-256: sha256=HEX

HEX is the HMAC-SHA256, keyed by the secret, of the bytes "T.BODY": the
timestamp, a dot, then the body exactly as received (do not re-encode the
JSON before checking). Refuse a timestamp far from now, so a recorded
request cannot be replayed later.

Run it with the same secret as oapkg:

    OAPKG_NOTIFY_SECRET=... python3 notify-receiver.py 9000

It prints one JSON line per verified notification and answers 401 (which
oapkg does not retry) to anything else. Standard library only.
"""

import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ["OAPKG_NOTIFY_SECRET"].strip().encode()
# How old (or how far in the future) a timestamp may be, in seconds.
TOLERANCE = 300


def verify(timestamp, signature, body):
    """Whether the headers sign `body` (bytes) with SECRET, recently."""
    if not timestamp or not signature:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - sent) > TOLERANCE:
        return False
    digest = hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256)
    # A constant-time comparison: never `==` on signatures.
    return hmac.compare_digest("sha256=" + digest.hexdigest(), signature)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not verify(
            self.headers.get("X-Oapkg-Timestamp"),
            self.headers.get("X-Oapkg-Signature-256"),
            body,
        ):
            print(json.dumps({"rejected": self.path}), flush=True)
            self.send_response(401)
            self.end_headers()
            return
        notification = json.loads(body)
        # Act on it here: notification["event"], ["message"], ["text"]...
        print(
            json.dumps({"verified": notification["event"], "text": notification["text"]}),
            flush=True,
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    server = HTTPServer(("127.0.0.1", port), Handler)
    print(json.dumps({"listening": server.server_address[1]}), flush=True)
    server.serve_forever()
