"""A loopback forwarder in front of act's artifact server that drops `mime_type`
from CreateArtifact requests.

act v0.2.89's server decodes requests against an artifact.proto that predates
the field, and rejects it ("unknown field mime_type"): every client that speaks
today's protocol fails there, actions/upload-artifact@v7 included
(https://github.com/nektos/act/issues/6022). GitHub's service wants the field, so
kubebuildx keeps sending it; this shim adapts the peer instead, for act only.
tests/integration/test_act.py pins act's refusal, so that the shim goes when act
learns the field. Everything else (the signed upload and download URLs act hands
out point straight at act) passes through untouched.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

CREATE_ARTIFACT = "/twirp/github.actions.results.api.v1.ArtifactService/CreateArtifact"
DROPPED = ("mime_type", "mimeType")


def adapt(path: str, body: bytes) -> bytes:
    """The request body act's server accepts."""
    if not path.startswith(CREATE_ARTIFACT) or not body:
        return body
    request = json.loads(body)
    for key in DROPPED:
        request.pop(key, None)
    return json.dumps(request).encode()


@contextlib.contextmanager
def serve(upstream: str) -> Iterator[str]:
    """Forward to `upstream` (http://127.0.0.1:PORT); yields the shim's own base URL."""

    class Forward(http.server.BaseHTTPRequestHandler):
        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = adapt(self.path, self.rfile.read(length)) if length else None
            # upstream is the http://127.0.0.1 address of act's server, never a caller's choice
            request = urllib.request.Request(upstream + self.path, data=body, method=self.command)  # noqa: S310
            for key, value in self.headers.items():
                if key.lower() not in ("host", "content-length", "connection"):
                    request.add_header(key, value)
            try:
                with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                    status, headers, data = response.status, response.headers, response.read()
            except urllib.error.HTTPError as exc:
                status, headers, data = exc.code, exc.headers, exc.read()
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _relay

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
