"""A webhook receiver that fails in every way, for the delivery tests: ``python -m leadpipe_common.testing.receiver``.

A real process (not a thread of the test), so the delivery service meets a
real peer. Every delivery is verified with the ``standardwebhooks`` package
(a bad signature is answered ``400`` and logged as such). Per ``webhook-id``
the attempts go: ``500``, then a reply slower than the sender's timeout, then
``429`` with ``Retry-After: 1``, then ``204``. Under ``/gone`` it answers ``410``; under ``/broken``,
``500`` until a file ``<log>.fixed`` exists, then ``204``. Under ``/api`` (subscriptions made through the
admin API, whose secrets the test learns only then) deliveries verify against the secrets listed one per line
in ``<log>.secrets`` and are answered ``204`` at once.
Each request is one JSON line in ``--log``: the path, the attempt number, the
webhook-id, whether the signature held, what was answered, and the event.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SCRIPT = (500, "slow", 429, 204)
SLOW_S = 3.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True, help="the whsec_ secret deliveries must verify with")
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    verifier = Webhook(args.secret)
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def api_verifiers() -> list[Webhook]:
        try:
            with open(args.log + ".secrets", encoding="utf-8") as f:
                return [Webhook(line.strip()) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            msg_id = self.headers.get("webhook-id", "")
            with lock:
                seen[msg_id] = attempt = seen.get(msg_id, 0) + 1
            headers = {k.lower(): v for k, v in self.headers.items()}
            event, signed = None, False
            for candidate in (api_verifiers() if self.path == "/api" else [verifier]):
                try:
                    event, signed = candidate.verify(body, headers), True
                    break
                except WebhookVerificationError:
                    pass
            if self.path == "/gone":
                answer: int | str = 410
            elif not signed:
                answer = 400
            elif self.path == "/api":
                answer = 204
            elif self.path == "/broken":
                answer = 204 if os.path.exists(args.log + ".fixed") else 500
            else:
                answer = SCRIPT[min(attempt, len(SCRIPT)) - 1]
            with lock, open(args.log, "a", encoding="utf-8") as log:
                log.write(json.dumps({"path": self.path, "attempt": attempt, "id": msg_id, "signed": signed,
                                      "answer": answer, "content_type": self.headers.get("content-type"),
                                      "event": event, "at": time.time()}) + "\n")
            if answer == "slow":
                time.sleep(SLOW_S)
                answer = 204
            self.send_response(int(answer))
            if answer == 429:
                self.send_header("retry-after", "1")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Receiver)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
