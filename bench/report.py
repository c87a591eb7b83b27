"""Turn raw run records into median tables with image-syncer / skopeo ratios."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "CASES",
    "breakdown_table",
    "curl_table",
    "main_table",
    "median_of",
    "phases_table",
    "ratio",
    "render_all",
    "scale_table",
]

#: Compared cases, in table order.
CASES = ("S cold", "S no-op", "delta", "L512", "L2G")
SKOPEO, SYNCER = "skopeo", "image-syncer"

Record = dict[str, Any]


def median_of(records: Iterable[Record], key: str) -> float | None:
    """Median of `record[key]` over the records that have it (None if none do)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.median(values) if values else None


def _select(records: Sequence[Record], case: str, tool: str) -> list[Record]:
    return [r for r in records if r["case"] == case and r["tool"] == tool]


def _total(requests: dict[str, int] | None) -> int | None:
    return None if requests is None else sum(requests.values())


def _median_requests(records: Sequence[Record], side: str) -> float | None:
    totals = [_total(r.get(side)) for r in records]
    values = [t for t in totals if t is not None]
    return statistics.median(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> str:
    """`12.3x`, or `-` when either side is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.1f}x"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


MAIN_HEADER = (
    "case",
    "skopeo s",
    "image-syncer s",
    "ratio",
    "image-syncer in-flow s",
    "in-flow ratio",
    "skopeo RSS MiB",
    "image-syncer RSS MiB (tree / main)",
    "RSS ratio (tree)",
    "dst req skopeo / syncer",
    "src req skopeo / syncer",
    "API CPU s (syncer)",
)


def _main_row(records: Sequence[Record], case: str) -> list[str]:
    sk, sy = _select(records, case, SKOPEO), _select(records, case, SYNCER)
    sk_wall, sy_wall = median_of(sk, "wall"), median_of(sy, "wall")
    sy_flow = median_of(sy, "inflow")
    sk_rss, sy_rss = median_of(sk, "rss_tree_mib"), median_of(sy, "rss_tree_mib")
    sy_main = median_of(sy, "rss_main_mib")
    return [
        case,
        _fmt(sk_wall),
        _fmt(sy_wall),
        ratio(sy_wall, sk_wall),
        _fmt(sy_flow),
        ratio(sy_flow, sk_wall),
        _fmt(sk_rss, 0),
        f"{_fmt(sy_rss, 0)} / {_fmt(sy_main, 0)}",
        ratio(sy_rss, sk_rss),
        f"{_fmt(_median_requests(sk, 'dst_requests'), 0)} / "
        f"{_fmt(_median_requests(sy, 'dst_requests'), 0)}",
        f"{_fmt(_median_requests(sk, 'src_requests'), 0)} / "
        f"{_fmt(_median_requests(sy, 'src_requests'), 0)}",
        _fmt(median_of(sy, "api_cpu_s"), 1),
    ]


def main_table(records: Sequence[Record]) -> list[str]:
    """Medians per case and tool, with image-syncer / skopeo ratios."""
    cases = [c for c in CASES if any(r["case"] == c for r in records)]
    return _table(MAIN_HEADER, [_main_row(records, c) for c in cases])


def _kinds(records: Sequence[Record], side: str) -> str:
    """Median count per request kind, e.g. `GET manifest 60, HEAD blob 241`."""
    kinds = sorted({k for r in records for k in (r.get(side) or {})})
    parts = []
    for kind in kinds:
        value = statistics.median([(r.get(side) or {}).get(kind, 0) for r in records])
        parts.append(f"{kind} {value:g}")
    return ", ".join(parts) or "-"


def breakdown_table(records: Sequence[Record]) -> list[str]:
    """Request kinds per case and tool (medians), destination then source."""
    rows = []
    cases = [c for c in (*CASES, "scale no-op") if any(r["case"] == c for r in records)]
    for case in cases:
        for tool in (SKOPEO, SYNCER):
            chosen = _select(records, case, tool)
            if chosen:
                rows.append(
                    [case, tool, _kinds(chosen, "dst_requests"), _kinds(chosen, "src_requests")]
                )
    return _table(("case", "tool", "destination requests", "source requests"), rows)


def curl_table(records: Sequence[Record]) -> list[str]:
    """The curl GET | curl PUT pipe per large blob, against both tools."""
    rows = []
    for case in ("L512", "L2G"):
        pipe = [r for r in records if r["case"] == case and r["tool"] == "curl pipe"]
        if not pipe:
            continue
        wall = median_of(pipe, "wall")
        size = pipe[0].get("bytes") or 0
        speed = size / wall / 2**20 if wall else None
        sk = median_of(_select(records, case, SKOPEO), "wall")
        sy = median_of(_select(records, case, SYNCER), "wall")
        sy_flow = median_of(_select(records, case, SYNCER), "inflow")
        rows.append(
            [
                case,
                _fmt(wall),
                _fmt(speed, 0),
                ratio(sk, wall),
                ratio(sy, wall),
                ratio(sy_flow, wall),
            ]
        )
    header = (
        "blob",
        "curl pipe s",
        "MiB/s",
        "skopeo / curl",
        "image-syncer / curl",
        "image-syncer in-flow / curl",
    )
    return _table(header, rows)


def scale_table(records: Sequence[Record]) -> list[str]:
    """No-op re-sync of the many-tags repository: time, requests per tag, RSS."""
    rows = []
    for tool in (SKOPEO, SYNCER):
        chosen = _select(records, "scale no-op", tool)
        if not chosen:
            continue
        tags = chosen[0].get("tags") or 1
        src, dst = (
            _median_requests(chosen, "src_requests"),
            _median_requests(chosen, "dst_requests"),
        )
        per_tag = (src or 0) / tags + (dst or 0) / tags
        rows.append(
            [
                tool,
                str(tags),
                _fmt(median_of(chosen, "wall")),
                _fmt(median_of(chosen, "inflow")),
                f"{_fmt(src, 0)} / {_fmt(dst, 0)}",
                _fmt(per_tag, 2),
                _fmt(median_of(chosen, "rss_tree_mib"), 0),
            ]
        )
    header = ("tool", "tags", "wall s", "in-flow s", "requests src / dst", "req per tag", "RSS MiB")
    return _table(header, rows)


PHASES = ("to_flow", "flow", "after_flow", "exit")


def phases_table(records: Sequence[Record]) -> list[str]:
    """image-syncer's wall time by phase (medians; see `bench/phases.py`)."""
    rows = []
    for case in (*CASES, "scale no-op"):
        chosen = [r for r in _select(records, case, SYNCER) if r.get("phases")]
        if not chosen:
            continue
        cells = [case, _fmt(median_of(chosen, "wall"))]
        for phase in PHASES:
            values = [r["phases"][phase] for r in chosen if phase in r["phases"]]
            cells.append(_fmt(statistics.median(values) if values else None))
        cells.append(_fmt(median_of(chosen, "inflow")))
        rows.append(cells)
    header = (
        "case",
        "wall s",
        "start -> flow",
        "flow",
        "after flow",
        "exit",
        "in-flow (report)",
    )
    return _table(header, rows)


def render_all(records: Sequence[Record]) -> str:
    """Every table, as Markdown, in the order the README shows them."""
    parts = [
        "## Medians (ratio = image-syncer / skopeo)",
        *main_table(records),
        "",
        "## Practical limit: curl GET | curl PUT of the large blob",
        *curl_table(records),
        "",
        "## Scale: no-op re-sync of one repository with many tags",
        *scale_table(records),
        "",
        "## image-syncer wall time by phase (medians, s)",
        *phases_table(records),
        "",
        "## Requests by kind (medians)",
        *breakdown_table(records),
    ]
    return "\n".join(parts)
