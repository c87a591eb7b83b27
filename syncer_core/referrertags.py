"""Tags that belong to another manifest (cosign's tags, the referrers tag schema's index).

cosign writes `sha256-<hex>.sig`, `.att` and `.sbom`; the OCI referrers tag
schema keeps a `sha256-<hex>` index where a registry has no referrers API.

They name their subject's digest, so a rule that copies referrers handles
them with their subject (never as images of their own), and pruning keeps or
deletes them with their subject.
"""

from __future__ import annotations

import re

__all__ = ["COSIGN_SUFFIXES", "fallback_tag", "is_referrer_tag", "referrer_subject"]

#: cosign's tag suffixes: signatures, attestations, SBOMs.
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
_REFERRER_TAG_RE = re.compile(r"^sha256-(?P<hex>[0-9a-f]{64})(?P<suffix>\.sig|\.att|\.sbom)?\Z")


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for a subject: `sha256:<hex>` → `sha256-<hex>`."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}"


def referrer_subject(tag: str) -> tuple[str, str] | None:
    """`(subject digest, suffix)` of a referrer tag (`""` for the fallback index), else None."""
    match = _REFERRER_TAG_RE.match(tag)
    if match is None:
        return None
    return f"sha256:{match['hex']}", match["suffix"] or ""


def is_referrer_tag(tag: str) -> bool:
    """Whether a tag is cosign's or the referrers tag schema's, not an image tag."""
    return _REFERRER_TAG_RE.match(tag) is not None
