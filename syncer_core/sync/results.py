"""Results as data: per-image outcomes, the run report, and the files written from it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BlobOutcome",
    "ImageResult",
    "ImageStatus",
    "PruneAction",
    "RuleEntry",
    "SyncReport",
    "failure_message",
    "human_size",
    "plural",
    "write_private_file",
]

#: Failed images named in a one-line failure message (the rest are counted).
_NAMED_FAILURES = 3


class ImageStatus(StrEnum):
    """What happened to one source → destination image."""

    SYNCED = "synced"
    SKIPPED = "skipped"
    FAILED = "failed"
    PLANNED = "planned"  # --dry-run: would be copied


class BlobOutcome(BaseModel):
    """What one blob copy did."""

    model_config = ConfigDict(frozen=True)

    digest: str
    action: str  # "copied" | "mounted" | "skipped"
    bytes: int = 0


class ImageResult(BaseModel):
    """The outcome of one image (tag or digest) of one rule."""

    model_config = ConfigDict(frozen=True)

    rule: str
    source: str
    target: str
    status: ImageStatus
    reason: str = ""
    digest: str | None = None
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_skipped: int = 0
    manifests_pushed: int = 0
    bytes: int = 0
    seconds: float = 0.0


class PruneAction(BaseModel):
    """One prune decision of a rule: a destination tag deleted, kept, or why nothing was pruned.

    `action` is `deleted`, `would-delete` (`--dry-run`), `kept` (stale but
    deleting it would take a kept tag with it), `failed`, or `skipped` (the
    whole rule's pruning, `target` then being the destination repository).
    """

    model_config = ConfigDict(frozen=True)

    rule: str
    target: str
    action: str
    digest: str | None = None
    reason: str = ""


class RuleEntry(BaseModel):
    """A rule as the images file wrote it: its source key and one destination."""

    model_config = ConfigDict(frozen=True)

    key: str
    target: str


class SyncReport(BaseModel):
    """Everything a run did, with the summary users read and the files they ask for.

    Attributes:
        images: every image's result.
        rule_errors: rules that failed before their images were known, with the reason.
        rule_entries: the images-file entry of each failed rule, so that
            `--output-failed-images` can hand the rule itself back.
        seconds: the run's duration.
    """

    images: list[ImageResult] = Field(default_factory=list)
    rule_errors: dict[str, str] = Field(default_factory=dict)
    rule_entries: dict[str, RuleEntry] = Field(default_factory=dict)
    seconds: float = 0.0
    #: Referrers (signatures, attestations, SBOMs) copied with their subjects.
    referrers: list[ImageResult] = Field(default_factory=list)
    #: What pruning deleted, kept or skipped.
    pruned: list[PruneAction] = Field(default_factory=list)

    def count(self, status: ImageStatus) -> int:
        """Number of images with this status."""
        return sum(1 for image in self.images if image.status == status)

    @property
    def failed(self) -> list[ImageResult]:
        """Images that failed."""
        return [image for image in self.images if image.status == ImageStatus.FAILED]

    @property
    def failed_extras(self) -> list[str]:
        """Failed referrer copies and prune deletions, one line each."""
        lines = [
            f"referrer {r.source} -> {r.target} failed: {r.reason}"
            for r in self.referrers
            if r.status == ImageStatus.FAILED
        ]
        lines += [
            f"prune {p.target} failed: {p.reason}" for p in self.pruned if p.action == "failed"
        ]
        return lines

    @property
    def ok(self) -> bool:
        """True when no image, rule, referrer or prune deletion failed."""
        return not self.failed and not self.rule_errors and not self.failed_extras

    @property
    def exit_code(self) -> int:
        """0 when everything succeeded, 1 when any image or rule failed."""
        return 0 if self.ok else 1

    def summary(self) -> str:
        """The end-of-run line: images, blobs, bytes, seconds."""

        def total(attr: str) -> int:
            return sum(int(getattr(i, attr)) for i in self.images)

        planned = self.count(ImageStatus.PLANNED)
        images = (
            f"images synced {self.count(ImageStatus.SYNCED)} / skipped "
            f"{self.count(ImageStatus.SKIPPED)} / failed {len(self.failed)}"
        )
        if planned:
            images += f" / would sync {planned}"
        if self.rule_errors:
            images += f" (+{plural(len(self.rule_errors), 'rule')} failed)"
        return (
            f"{images}; blobs copied {total('blobs_copied')} / mounted "
            f"{total('blobs_mounted')} / skipped {total('blobs_skipped')}; "
            f"{human_size(total('bytes'))}; {self.seconds:.1f}s{self._extras_summary()}"
        )

    def _extras_summary(self) -> str:
        """`; referrers synced n / skipped n / failed n; tags pruned n`, for what happened."""
        parts = []
        if self.referrers:
            counts = {s: sum(1 for r in self.referrers if r.status == s) for s in ImageStatus}
            shown = " / ".join(f"{s.value} {n}" for s, n in counts.items() if n)
            parts.append(f"referrers {shown}")
        deleted = sum(1 for p in self.pruned if p.action in ("deleted", "would-delete"))
        if self.pruned:
            verb = (
                "would prune" if any(p.action == "would-delete" for p in self.pruned) else "pruned"
            )
            parts.append(f"tags {verb} {deleted}")
        return "".join(f"; {part}" for part in parts)

    def failure_lines(self) -> list[str]:
        """One line per failed rule or image, naming it and the reason."""
        lines = [f"rule {rule!r} failed: {reason}" for rule, reason in self.rule_errors.items()]
        lines += [f"{i.source} -> {i.target} failed: {i.reason}" for i in self.failed]
        return lines + self.failed_extras

    def failure_message(self) -> str | None:
        """`k of n images failed in m rules: ...` naming the first failures; None if all is ok.

        Failed referrers count among the failed images' rules, failed prune
        deletions are added after them: whenever the exit code is 1, there is
        a message.
        """
        if self.ok:
            return None
        referrers = [r for r in self.referrers if r.status == ImageStatus.FAILED]
        prunes = [p for p in self.pruned if p.action == "failed"]
        rules = {i.rule for i in [*self.failed, *referrers]} | {p.rule for p in prunes}
        rules |= set(self.rule_errors)
        head = (
            f"{len(self.failed)} of {plural(len(self.images), 'image')} failed in "
            f"{plural(len(rules), 'rule')}"
        )
        if referrers:
            head += f" (and {plural(len(referrers), 'referrer')})"
        message = failure_message([*self.failed, *referrers], self.rule_errors, head)
        return "; ".join([message, *(f"prune {p.target} failed ({p.reason})" for p in prunes)])

    def image_map(self, statuses: Iterable[ImageStatus]) -> dict[str, list[str]]:
        """`source -> [targets]`: the images-file shape, reusable as `--images`.

        With FAILED among `statuses`, a rule that failed before its images were
        known (its listing, say) is included as the rule itself, so the file
        retries it whole.
        """
        wanted = set(statuses)
        mapping: dict[str, list[str]] = {}

        def add(source: str, target: str) -> None:
            targets = mapping.setdefault(source, [])
            if target not in targets:
                targets.append(target)

        for image in self.images:
            if image.status in wanted:
                add(image.source, image.target)
        if ImageStatus.FAILED in wanted:
            for rule in self.rule_errors:
                entry = self.rule_entries.get(rule)
                if entry is not None:
                    add(entry.key, entry.target)
        return mapping

    def write_images_file(self, path: Path, statuses: Iterable[ImageStatus], fmt: str) -> None:
        """Write an images file (YAML or JSON) of the images with these statuses."""
        mapping = self.image_map(statuses)
        if fmt == "json":
            text = json.dumps(mapping, indent=2) + "\n"
        else:
            text = yaml.safe_dump(mapping, sort_keys=False) if mapping else "{}\n"
        write_private_file(path, text)

    def write_json(self, path: Path) -> None:
        """Write the full JSON report."""
        write_private_file(path, self.model_dump_json(indent=2) + "\n")

    def markdown(self) -> str:
        """A Markdown table of every image, for the Prefect artifact."""
        rows = [
            "| source | target | status | bytes | blobs copied/mounted/skipped | reason |",
            "|---|---|---|---|---|---|",
        ]
        for i in self.images:
            reason = i.reason.replace("|", "\\|").replace("\n", " ")[:300]
            rows.append(
                f"| `{i.source}` | `{i.target}` | {i.status.value} | {human_size(i.bytes)} | "
                f"{i.blobs_copied}/{i.blobs_mounted}/{i.blobs_skipped} | {reason} |"
            )
        for rule, reason in self.rule_errors.items():
            rows.append(f"| `{rule}` | | rule failed | | | {reason.replace('|', '/')[:300]} |")
        for r in self.referrers:
            rows.append(
                f"| `{r.source}` | `{r.target}` | referrer {r.status.value} | "
                f"{human_size(r.bytes)} | {r.blobs_copied}/{r.blobs_mounted}/{r.blobs_skipped} | "
                f"{_cell(r.reason)} |"
            )
        for p in self.pruned:
            rows.append(f"| `{p.rule}` | `{p.target}` | prune {p.action} | | | {_cell(p.reason)} |")
        return f"**{self.summary()}**\n\n" + "\n".join(rows)


def plural(count: int, word: str) -> str:
    """`1 image`, `2 images`: the count with the word in the right number."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def failure_message(
    failed: Sequence[ImageResult], rule_errors: Mapping[str, str], head: str
) -> str:
    """`head: <first failures with their reasons>[, and N more]`, one line for a state message."""
    named = [f"rule {rule} ({reason})" for rule, reason in rule_errors.items()]
    named += [f"{image.target} ({image.reason})" for image in failed]
    shown = "; ".join(_clip(text) for text in named[:_NAMED_FAILURES])
    more = len(named) - _NAMED_FAILURES
    return f"{head}: {shown}" + (f"; and {more} more" if more > 0 else "")


def _clip(text: str, limit: int = 300) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_private_file(path: Path, text: str) -> None:
    """Create or replace a file readable and writable by its owner only (0600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:300]


def human_size(size: int) -> str:
    """`512 B`, `6.0 MiB`: a byte count as people read it."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover
