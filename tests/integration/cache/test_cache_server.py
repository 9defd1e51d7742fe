"""The cache service test server answers as GitHub's does where BuildKit's client depends on it:
bearer JWTs with ``ac`` scopes, Twirp error shapes, already_exists on a taken key, a miss as
``ok: false``, restore keys as prefixes with the newest entry first."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import requests
from cache_twirp_server import READ, SERVICE_PATH, WRITE, RunningCache, make_token

VERSION = "693bb7016429d80366022f036f84856b6e1f2d7fa6bfa0a5d8a0dc6d5db1e7d8"


def call(
    cache: RunningCache, method: str, body: dict[str, Any], token: str | None = None
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token != "":
        headers["Authorization"] = f"Bearer {token or cache.token}"
    return requests.post(
        f"{cache.results_url.rstrip('/')}{SERVICE_PATH}{method}", json=body, headers=headers, timeout=30
    )


def save(cache: RunningCache, key: str, data: bytes, token: str | None = None) -> None:
    created = call(cache, "CreateCacheEntry", {"key": key, "version": VERSION}, token)
    assert created.status_code == 200 and created.json()["ok"] is True, created.text
    upload = requests.put(
        created.json()["signed_upload_url"], data=data, headers={"x-ms-blob-type": "BlockBlob"}, timeout=30
    )
    assert upload.status_code == 201, upload.text
    done = call(
        cache, "FinalizeCacheEntryUpload", {"key": key, "size_bytes": len(data), "version": VERSION}, token
    )
    assert done.status_code == 200, done.text
    assert done.json()["ok"] is True and isinstance(done.json()["entry_id"], str)


def test_a_request_without_a_valid_bearer_token_is_unauthenticated(cache_service: RunningCache) -> None:
    expired = make_token([("refs/heads/main", READ | WRITE)], expires_in=timedelta(minutes=-1))
    forged = cache_service.token + "x"  # not the signature the secret makes
    for token in ("", expired, forged):
        reply = call(cache_service, "GetCacheEntryDownloadURL", {"key": "k", "version": VERSION}, token)
        assert reply.status_code == 401
        assert reply.json() == {"code": "unauthenticated", "msg": "invalid token"}


def test_a_miss_is_ok_false_and_a_taken_key_already_exists(cache_service: RunningCache) -> None:
    miss = call(
        cache_service, "GetCacheEntryDownloadURL", {"key": "nothing", "restore_keys": [], "version": VERSION}
    )
    assert miss.status_code == 200 and miss.json()["ok"] is False
    save(cache_service, "index-x#1", b"first")
    again = call(cache_service, "CreateCacheEntry", {"key": "index-x#1", "version": VERSION})
    assert again.status_code == 409 and again.json()["code"] == "already_exists"
    other_version = call(cache_service, "GetCacheEntryDownloadURL", {"key": "index-x#1", "version": "0" * 64})
    assert other_version.json()["ok"] is False


def test_restore_keys_match_as_prefixes_newest_first_and_the_blob_downloads(
    cache_service: RunningCache,
) -> None:
    save(cache_service, "index-x#1", b"first")
    save(cache_service, "index-x#2", b"second")
    found = call(
        cache_service,
        "GetCacheEntryDownloadURL",
        {"key": "index-x#", "restore_keys": ["index-x#"], "version": VERSION},
    ).json()
    assert found["ok"] is True and found["matched_key"] == "index-x#2"
    assert requests.get(found["signed_download_url"], timeout=30).content == b"second"


def test_a_read_only_scope_is_read_but_never_written(cache_service: RunningCache) -> None:
    save(cache_service, "from-main", b"base branch")
    pull_request = make_token([("refs/pull/1/merge", READ | WRITE), ("refs/heads/main", READ)])
    found = call(
        cache_service, "GetCacheEntryDownloadURL", {"key": "from-main", "version": VERSION}, pull_request
    )
    assert found.json()["matched_key"] == "from-main"
    save(cache_service, "from-main", b"the pull request's own", pull_request)  # its own scope: no clash
    read_only = make_token([("refs/heads/main", READ)])
    denied = call(cache_service, "CreateCacheEntry", {"key": "k", "version": VERSION}, read_only)
    assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"
