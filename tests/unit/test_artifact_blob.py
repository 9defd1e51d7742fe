"""Block upload on a scripted session (no sockets): blocks, retries, commit; no commit after a failure."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

from kubebuildx.artifacts.blob import BLOCK_SIZE, BlockUploader, block_id, block_list_xml, block_size_for
from kubebuildx.artifacts.retry import Backoff
from kubebuildx.errors import ArtifactError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "artifacts"
URL = "https://acct.blob.core.windows.net/actions-results/run/artifact.zip?sv=2021-08-06&sp=cw&sig=TOPSECRET"
QUICK = Backoff(attempts=4, base=0.0, multiplier=2.0, cap=0.0)


class Storage(requests.Session):
    """Answers Put Block / Put Block List like blob storage, with scripted faults per target."""

    def __init__(self, faults: dict[str, list[Any]] | None = None) -> None:
        super().__init__()
        self.faults = faults or {}
        self.blocks: dict[str, bytes] = {}
        self.committed: list[str] | None = None
        self.commit_headers: dict[str, str] = {}
        self.requests: list[str] = []

    def put(self, url: str | bytes, data: Any = None, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        query = parse_qs(urlsplit(str(url)).query)
        comp = query["comp"][0]
        target = (
            "commit"
            if comp == "blocklist"
            else f"block{int(base64.b64decode(unquote(query['blockid'][0]))[-6:])}"
        )
        self.requests.append(target)
        queue = self.faults.get(target, [])
        fault = queue[0] if queue and queue[0] == "always" else (queue.pop(0) if queue else None)
        response = requests.Response()
        response.reason = "scripted"
        response._content = b""
        response._content_consumed = True
        if fault == "always" or isinstance(fault, int):
            response.status_code = 503 if fault == "always" else fault
            response.headers["x-ms-error-code"] = "ServerBusy"
            return response
        if isinstance(fault, Exception):
            raise fault
        headers = kwargs["headers"]
        assert len(headers["x-ms-client-request-id"]) == 36
        assert self.headers["x-ms-version"] == "2025-11-05"
        if comp == "block":
            assert headers["Content-Type"] == "application/octet-stream"
            self.blocks[query["blockid"][0]] = data
        else:
            self.committed = [line.split("</Latest>")[0] for line in data.decode().split("<Latest>")[1:]]
            self.commit_headers = headers
        response.status_code = 201
        return response


def upload(storage: Storage, payload: bytes, piece: int = 100_000) -> tuple[int, str]:
    uploader = BlockUploader(URL, session=storage, block_size=256 * 1024, concurrency=3, backoff=QUICK)
    for start in range(0, len(payload), piece):
        uploader.write(payload[start : start + piece])
    return uploader.finish()


PAYLOAD = hashlib.shake_256(b"payload").digest(2_000_000)


def test_block_ids_match_the_azure_sdk() -> None:
    # @azure/storage-blob generateBlockID("00000000-...-000000000000", 1) and (..., 123456)
    prefix = "00000000-0000-0000-0000-000000000000"
    assert block_id(prefix, 1) == "MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAx"
    assert (
        block_id("9b2a7c3e-1f4d-4e5a-8b6c-7d8e9f0a1b2c", 123456)
        == "OWIyYTdjM2UtMWY0ZC00ZTVhLThiNmMtN2Q4ZTlmMGExYjJjMDAwMDAwMTIzNDU2"
    )
    ids = [block_id(prefix, 0), block_id(prefix, 1)]
    assert block_list_xml(ids) == (FIXTURES / "block_list.xml").read_bytes().strip()


@pytest.mark.parametrize("size", [0, 1 << 30, 90 << 30, 200 << 30, 1 << 40])
def test_block_size_keeps_under_the_block_limit(size: int) -> None:
    chosen = block_size_for(size)
    assert chosen >= BLOCK_SIZE
    assert (size + (64 << 20)) / chosen < 50_000


def test_blocks_in_order_then_one_commit_as_zip() -> None:
    storage = Storage()
    size, digest = upload(storage, PAYLOAD)
    assert size == len(PAYLOAD)
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    assert storage.committed is not None
    assert b"".join(storage.blocks[bid] for bid in storage.committed) == PAYLOAD
    assert len({len(bid) for bid in storage.committed}) == 1
    assert storage.commit_headers["x-ms-blob-content-type"] == "application/zip"
    assert storage.requests[-1] == "commit"


def test_transient_faults_are_retried() -> None:
    storage = Storage(
        {
            "block0": [503, 500],
            "block1": [requests.ConnectionError("reset")],
            "block2": [requests.Timeout("slow")],
            "block3": [requests.exceptions.ChunkedEncodingError(f"broken reply from {URL}")],
            "commit": [503],
        }
    )
    _, digest = upload(storage, PAYLOAD)
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    assert storage.requests.count("block0") == 3
    assert storage.requests.count("block3") == 2
    assert storage.requests.count("commit") == 2


def test_a_block_that_keeps_failing_stops_the_upload_without_commit() -> None:
    storage = Storage({"block1": ["always"]})
    with pytest.raises(ArtifactError, match="block 1 after 4 attempts") as failure:
        upload(storage, PAYLOAD)
    assert "TOPSECRET" not in str(failure.value)
    assert "commit" not in storage.requests
    assert storage.committed is None


def test_a_refused_block_is_not_retried() -> None:
    storage = Storage({"block0": [403]})
    with pytest.raises(ArtifactError, match="403") as failure:
        upload(storage, PAYLOAD)
    assert storage.requests.count("block0") == 1
    assert "commit" not in storage.requests
    assert failure.value.hint is not None and "expired" in failure.value.hint
