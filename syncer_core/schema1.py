"""The digest rule of signed Docker schema1 manifests (libtrust "pretty" JWS).

A signed schema1 manifest is the manifest JSON with a `signatures` array
spliced in before its closing brace. Its digest, the one registries answer
in `Docker-Content-Digest` and address it by, covers the *payload*: the
bytes without the signatures. Each signature's protected header says how to
rebuild it: the first `formatLength` bytes, then the base64url
`formatTail`. distribution signs again on every GET, so the served bytes
differ each time while the payload, and so the digest, stays the same.

This is containers/image `manifest.Digest`: the signatures are not verified
here (the registry that accepts the push does that), only used to find the
payload.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

__all__ = ["signed_payload"]


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _payload_for(data: bytes, signature: Any) -> bytes | None:
    if not isinstance(signature, dict) or not isinstance(signature.get("protected"), str):
        return None
    try:
        header = json.loads(_b64url(signature["protected"]))
        length, tail = header["formatLength"], _b64url(header["formatTail"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    if not isinstance(length, int) or not 0 < length <= len(data):
        return None
    return data[:length] + tail


def signed_payload(data: bytes) -> bytes | None:
    """The payload of a signed schema1 manifest, or None if `data` carries no usable signature.

    Every signature must describe the same payload; a document without
    `signatures` (unsigned schema1) or with unreadable ones gives None, and
    its digest is then that of its bytes.
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    signatures = doc.get("signatures") if isinstance(doc, dict) else None
    if not isinstance(signatures, list) or not signatures:
        return None
    payloads = {_payload_for(data, signature) for signature in signatures}
    if len(payloads) != 1 or None in payloads:
        return None
    return payloads.pop()
