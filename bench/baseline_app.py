"""The ingest benchmark's baseline: a bare Falcon + waitress app that only verifies the HMAC over the raw
body and parses the JSON, then answers 202. Run: python bench/baseline_app.py PORT THREADS SECRET."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys

import falcon
import waitress


class Receiver:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = req.bounded_stream.read()
        given = req.get_header("X-Hub-Signature", default="")
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.lower(), expected):
            raise falcon.HTTPUnauthorized()
        json.loads(body)
        resp.status = 202
        resp.media = {"status": "accepted"}


def main() -> None:
    port, threads, secret = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
    app = falcon.App()
    app.add_route("/webhooks/asgardeo", Receiver(secret))
    app.add_route("/healthz", type("Health", (), {"on_get": lambda self, req, resp: None})())
    waitress.serve(app, host="127.0.0.1", port=port, threads=threads, _quiet=True)


if __name__ == "__main__":
    main()
