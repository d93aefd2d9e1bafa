"""A minimal review-callback receiver (docs/webhooks.md): checks the signature, refuses
old timestamps, applies each delivery id once. Standard library only.

    WEBHOOK_SECRET=whsec_... python3 docs/examples/webhook_receiver.py 127.0.0.1 9911
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ["WEBHOOK_SECRET"].encode()
TOLERANCE_SECONDS = 300
seen: set[str] = set()  # a real receiver keeps these in its database


def valid(header: str, body: bytes) -> bool:
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if not fields.get("t", "").isdigit() or \
            abs(time.time() - int(fields["t"])) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(SECRET, fields["t"].encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), fields.get("v1", ""))


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if not valid(self.headers.get("Faceapi-Signature", ""), body):
            self.send_response(401)
            self.end_headers()
            return
        delivery = self.headers["Faceapi-Delivery-Id"]
        if delivery not in seen:  # at least once on the wire, once here
            seen.add(delivery)
            decision = json.loads(body)
            print(f"{delivery}: decision {decision['decision_id']} is "
                  f"{decision['outcome']} {decision['reasons']}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    HTTPServer((sys.argv[1], int(sys.argv[2])), Receiver).serve_forever()
