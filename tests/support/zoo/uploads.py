"""Upload-session behaviours of real registries: body-size limits and resumable sessions.

Body-size limits (counted as faults `monolithic-limit` and `patch-limit`; the
body is read and dropped, as nginx's lingering close does, then the refusal
is answered): `monolithic_limit=N` answers 413 to an upload `PUT` carrying
more than N bytes (ACR over ~20 MB, Harbor #23015; 0 stands for a
chunked-only registry), `patch_limit=N` answers 416 to a `PATCH` over N bytes
(GHCR over 4 MiB, ocx-sh/ocx PR #237).

With `resumable_uploads=True` the proxy stands for a registry that keeps
upload state on the server (an upload URL stays valid and a cut request
keeps the bytes that arrived): the part of a cut upload body that arrived is
committed to the session as a complete `PATCH`, and a request carrying a
stale distribution `_state` gets the session's latest one. Without it, a cut
upload is what distribution 2.8 makes of it: the session turns
`BLOB_UPLOAD_INVALID` (a registry that refuses to resume, like ACR).
"""

from __future__ import annotations

import re
import threading

from tests.support.zoo.wire import Answer, Request, error_body

__all__ = ["SizeLimits", "UploadStates", "kept_part_head"]

_UPLOAD_LOCATION_RE = re.compile(r"/blobs/uploads/(?P<id>[^/?]+)\?(?P<query>.*)$")


class SizeLimits:
    """The largest upload bodies a registry takes: `PUT` (413 above) and `PATCH` (416 above)."""

    def __init__(self, monolithic: int | None, patch: int | None):
        self.monolithic = monolithic
        self.patch = patch

    def refusal(self, request: Request) -> Answer | None:
        """The refusal of an upload body over this registry's limit, or None."""
        if request.kind != "upload":
            return None
        length = request.header("content-length") or ""
        size = int(length) if length.isdigit() else None
        if "chunked" in (request.header("transfer-encoding") or "").lower():
            size = 1 << 62  # unknown length: over any limit
        if size is None or size == 0:
            return None
        limit = {"PUT": self.monolithic, "PATCH": self.patch}.get(request.method)
        if limit is None or size <= limit:
            return None
        status, fault = (
            (413, "monolithic-limit") if request.method == "PUT" else (416, "patch-limit")
        )
        return Answer(status, fault, error_body(status, fault))


class UploadStates:
    """The latest `Location` query of every upload session (distribution's `_state`)."""

    def __init__(self, lock: threading.Lock):
        self._lock = lock
        self._states: dict[str, str] = {}  # upload id -> latest Location query

    def remember(self, location: str) -> None:
        """Keep the `_state` of an upload `Location` the registry answered."""
        match = _UPLOAD_LOCATION_RE.search(location)
        if match is not None:
            with self._lock:
                self._states[match["id"]] = match["query"]

    def refresh(self, request: Request) -> None:
        """Give a request on an upload session the session's latest `_state`."""
        path, _, query = request.target.partition("?")
        match = _UPLOAD_LOCATION_RE.search(request.target)
        if match is None or "_state=" not in query:
            return
        with self._lock:
            latest = self._states.get(match["id"])
        if latest is None:
            return
        others = [p for p in query.split("&") if p and not p.startswith("_state=")]
        fresh = [p for p in latest.split("&") if p.startswith("_state=")]
        request.target = path + "?" + "&".join(fresh + others)


def upload_id(target: str) -> str | None:
    """The upload session id in an upload URL, or None."""
    match = _UPLOAD_LOCATION_RE.search(target if "?" in target else target + "?")
    return match["id"] if match else None


def kept_part_head(request: Request, allowed: int) -> bytes:
    """A `PATCH` of the first `allowed` bytes of `request`'s body, to the same session."""
    path, _, query = request.target.partition("?")
    params = [p for p in query.split("&") if p and not p.startswith("digest=")]
    headers = [
        (k, v)
        for k, v in request.headers
        if k.lower() not in ("content-length", "content-range", "transfer-encoding")
    ]
    headers.append(("Content-Length", str(allowed)))
    lines = [f"PATCH {path}?{'&'.join(params)} {request.version}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
