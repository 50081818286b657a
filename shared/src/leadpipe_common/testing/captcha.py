"""A local stand-in for a CAPTCHA service's "siteverify" endpoint, for the test stacks.

It speaks the protocol Turnstile, hCaptcha and reCAPTCHA share (a form-encoded
POST of ``secret``, ``response``, ``remoteip``; a JSON verdict) and answers by
the ``response`` a test sends: ``human`` is solved, ``bot`` is not, ``slow``
answers after ``SLOW_S`` (longer than the test forms' timeout), ``broken`` is a
``500``. A wrong secret gets ``invalid-input-secret``, as the real services do.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from leadpipe_common.local.infra import free_port

SECRET = "0x4AAAAAAAtest-siteverify-secret"
SLOW_S = 2.0


class FakeVerifier:
    """Started once per test process (``url`` starts it); records every call it answered."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[dict[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        with self._lock:
            if self._server is None:
                self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
                self._server.daemon_threads = True
                threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-siteverify").start()
        return f"http://127.0.0.1:{self.port}/siteverify"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        calls = self.calls

        class Siteverify(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                calls.append(form)
                answer = form.get("response", "")
                if answer == "broken":
                    return self._reply(500, {"error": "internal"})
                if answer == "slow":
                    time.sleep(SLOW_S)
                if form.get("secret") != SECRET:
                    return self._reply(200, {"success": False, "error-codes": ["invalid-input-secret"]})
                if answer in ("human", "slow"):
                    return self._reply(200, {"success": True, "hostname": "127.0.0.1"})
                self._reply(200, {"success": False, "error-codes": ["invalid-input-response"]})

            def _reply(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Siteverify


VERIFIER = FakeVerifier()
