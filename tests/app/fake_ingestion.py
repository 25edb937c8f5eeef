"""A stand-in for the Application Insights ingestion endpoint, served on 127.0.0.1 by the tests."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def connection_string(port: int) -> str:
    """An Application Insights connection string whose ingestion endpoint is 127.0.0.1:``port``."""
    return f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:{port}/"


class FakeIngestion:
    """Records the envelopes it accepts; ``mode`` picks the answer: ``accept``, ``503`` or ``partial``."""

    def __init__(self, port: int = 0) -> None:
        self.mode = "accept"
        self.accepted: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []  # every envelope, accepted or not
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.port)

    def events(self, name: str = "TweetFeedback", accepted: bool = True) -> list[dict[str, Any]]:
        """Event envelopes named ``name``: those accepted (default) or all received."""
        with self._lock:
            pool = self.accepted if accepted else self.received
            return [e for e in pool if e.get("data", {}).get("baseData", {}).get("name") == name]

    def feedback_ids(self, accepted: bool = True) -> list[str]:
        return [e["data"]["baseData"]["properties"]["feedback_id"] for e in self.events(accepted=accepted)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                envelopes = json.loads(body)
                with fake._lock:
                    fake.requests += 1
                    fake.received.extend(envelopes)
                    mode = fake.mode
                    if mode == "503":
                        reply, status = {"itemsReceived": len(envelopes), "itemsAccepted": 0, "errors": []}, 503
                    elif mode == "partial":  # every other item refused with a retryable 500
                        errors = [{"index": i, "statusCode": 500, "message": "try later"}
                                  for i in range(len(envelopes)) if i % 2 == 1]
                        fake.accepted.extend(e for i, e in enumerate(envelopes) if i % 2 == 0)
                        reply = {"itemsReceived": len(envelopes), "itemsAccepted": len(envelopes) - len(errors),
                                 "errors": errors}
                        status = 206 if errors else 200
                    else:
                        fake.accepted.extend(envelopes)
                        reply = {"itemsReceived": len(envelopes), "itemsAccepted": len(envelopes), "errors": []}
                        status = 200
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def start(self) -> FakeIngestion:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
