"""A stand-in for actions/download-artifact with `pattern` and `merge-multiple: true`,
which cannot be fetched in the proving ground: every artifact of this run whose name
matches PATTERN, unzipped into DEST. It speaks the artifact service's v4 Twirp API as
the official client does (ListArtifacts, GetSignedArtifactURL, then a GET).

Usage (in a `run:` step): python3 tests/workflows/fetch_artifacts.py 'digests-*' digests
"""

from __future__ import annotations

import base64
import fnmatch
import io
import json
import os
import sys
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

SERVICE = "twirp/github.actions.results.api.v1.ArtifactService"


def backend_ids(token: str) -> tuple[str, str]:
    """The run's and the job's backend ids, from the token's `Actions.Results:RUN:JOB` scope."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for scope in str(claims.get("scp", "")).split():
        if scope.startswith("Actions.Results:"):
            _, run, job = scope.split(":", 2)
            return run, job
    raise SystemExit("ACTIONS_RUNTIME_TOKEN has no Actions.Results scope")


def call(base: str, token: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base.rstrip('/')}/{SERVICE}/{method}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        reply: dict[str, Any] = json.loads(response.read() or b"{}")
        return reply


def main(pattern: str, dest: Path) -> int:
    token, base = os.environ["ACTIONS_RUNTIME_TOKEN"], os.environ["ACTIONS_RESULTS_URL"]
    run, job = backend_ids(token)
    ids = {"workflow_run_backend_id": run, "workflow_job_run_backend_id": job}
    listed = call(base, token, "ListArtifacts", ids).get("artifacts") or []
    names = sorted(a["name"] for a in listed if fnmatch.fnmatch(a["name"], pattern))
    if not names:
        print(f"no artifact matches {pattern!r}", file=sys.stderr)
        return 1
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        signed = call(base, token, "GetSignedArtifactURL", {**ids, "name": name})
        url = signed.get("signed_url") or signed.get("signedUrl") or ""
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            archive.extractall(dest)
            print(f"{name}: {', '.join(archive.namelist())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
