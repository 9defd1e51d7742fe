"""A stand-in for the runner's ID token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL), on loopback.

As on GitHub: the URL the job is given already has a query (``?api-version=2.0``), the
audience comes as ``&audience=...`` (GitHub's default, ``https://github.com/<owner>``, without
it), the bearer must be the job's request token, which on GitHub is the value the runner also
gives as ACTIONS_RUNTIME_TOKEN, and a good request answers ``{"count": ..., "value": "<jwt>"}``.
A missing or wrong bearer is refused with 401, a request token that may not mint with 403, in
the shape of the Actions service's errors (a JSON object with ``message`` and ``typeKey``).

``mint(audience)`` makes each token, so a test chooses its claims (another repository, an
expired one) through the issuer of hack/cluster/oidc.py, or anything else. ``requests`` records
what was asked, so a test can count refreshes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PATH = "/_apis/distributedtask/hubs/Actions/plans/plan-1/jobs/job-1/idtoken"
API_VERSION = "2.0"


@dataclass
class Stub:
    runtime_token: str
    mint: Callable[[str], str]
    default_audience: str = "https://github.com/acme"
    forbidden: bool = False  # answer 403, as for a request token without id-token: write
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    def env(self) -> dict[str, str]:
        """What the runner gives a job with id-token: write."""
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.runtime_token,
            "ACTIONS_RUNTIME_TOKEN": self.runtime_token,
        }


def _error(message: str, type_key: str) -> dict[str, Any]:
    return {
        "$id": "1",
        "innerException": None,
        "message": message,
        "typeName": f"Microsoft.TeamFoundation.DistributedTask.WebApi.{type_key}, "
        "Microsoft.TeamFoundation.DistributedTask.WebApi",
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": 3000,
    }


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            audience = (query.get("audience") or [stub.default_audience])[0]
            authorization = self.headers.get("Authorization", "")
            stub.requests.append({"path": url.path, "query": query, "authorization": authorization})
            if url.path != PATH:
                self._send(404, _error("The resource cannot be found.", "ResourceNotFoundException"))
            elif authorization != f"Bearer {stub.runtime_token}":
                self._send(401, _error("TF400813: The user '' is not authorized to access this resource.",
                                       "UnauthorizedRequestException"))  # fmt: skip
            elif stub.forbidden:
                self._send(403, _error("Access denied: the job may not request an ID token.",
                                       "AccessDeniedException"))  # fmt: skip
            elif query.get("api-version") != [API_VERSION]:
                self._send(
                    400, _error("The api-version query parameter is required.", "VssInvalidApiVersion")
                )
            else:
                self._send(200, {"count": 1, "value": stub.mint(audience)})

        def do_POST(self) -> None:  # the endpoint takes GET (and POST with {"aud"}); we need GET only
            self._send(405, _error("Method not allowed.", "MethodNotAllowedException"))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(stub: Stub) -> Iterator[Stub]:
    """The stub on a free loopback port (plain HTTP, as a test needs no TLS for it)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    stub.url = f"http://127.0.0.1:{httpd.server_address[1]}{PATH}?api-version={API_VERSION}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        httpd.shutdown()
        httpd.server_close()
