"""Turn raw run records into median tables with ratios against the peers.

A record's place is `(case, tool, link, api, flags)`: `link` is `loopback` or
`wan`, `api` the Prefect set-up of image-syncer and the floor (the primary
one unless a table says otherwise), `flags` extra image-syncer flags (fixed
rule concurrencies), left out of every table but the set-ups one.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from bench.harness import CURL, FLOOR_ASYNC, FLOOR_OURS, ORIGINAL, PREFECT_TOOLS, SKOPEO, SYNCER

__all__ = ["CASES", "Records", "median_of", "ratio", "render_all"]

#: Compared cases, in table order.
CASES = ("S cold", "S no-op", "delta", "L512", "L2G")
Record = dict[str, Any]


def median_of(records: Iterable[Record], key: str) -> float | None:
    """Median of `record[key]` over the records that have it (None if none do)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.median(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> str:
    """`12.3x`, or `-` when either side is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}x"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


class Records:
    """The records of one benchmark run, selectable by place."""

    def __init__(self, records: Sequence[Record], primary: str):
        self.all = list(records)
        self.primary = primary

    def select(
        self,
        case: str,
        tool: str,
        *,
        link: str = "loopback",
        api: str | None = None,
        flags: str | None = None,
    ) -> list[Record]:
        """Records of one place; Prefect tools default to the primary API."""
        wanted_api = (api or self.primary) if tool in PREFECT_TOOLS else None
        return [
            r
            for r in self.all
            if r["case"] == case
            and r["tool"] == tool
            and r.get("link", "loopback") == link
            and r.get("api") == wanted_api
            and r.get("flags") == flags
        ]

    def median(self, case: str, tool: str, key: str = "wall", **place: Any) -> float | None:
        """Median of `key` over one place."""
        return median_of(self.select(case, tool, **place), key)

    def tools_present(self) -> list[str]:
        """The contenders that ran, in column order."""
        present = {r["tool"] for r in self.all}
        return [t for t in (SKOPEO, ORIGINAL, SYNCER) if t in present]


def _requests(records: Sequence[Record], side: str) -> float | None:
    totals = [sum(r[side].values()) for r in records if r.get(side) is not None]
    return statistics.median(totals) if totals else None


def contenders_table(data: Records, link: str) -> list[str]:
    """Per case: every contender's wall time, ours in-flow, ratios, RSS, requests."""
    tools = data.tools_present()
    peers = [t for t in tools if t != SYNCER]
    header = [
        "case",
        *(f"{t} s" for t in tools),
        "image-syncer in-flow s",
        *(f"/ {p} (in-flow)" for p in peers),
        "RSS MiB " + " / ".join(tools),
        "dst req " + " / ".join(tools),
        "API CPU s",
    ]
    rows = []
    for case in (*CASES, "scale no-op", "200-rule no-op"):
        chosen = {t: data.select(case, t, link=link) for t in tools}
        if not any(chosen.values()):
            continue
        walls = {t: median_of(chosen[t], "wall") for t in tools}
        flow = median_of(chosen.get(SYNCER, []), "inflow")
        ours = walls.get(SYNCER)
        rows.append(
            [
                case,
                *(_fmt(walls[t]) for t in tools),
                _fmt(flow),
                *(f"{ratio(ours, walls[p])} ({ratio(flow, walls[p])})" for p in peers),
                " / ".join(_fmt(median_of(chosen[t], "rss_tree_mib"), 0) for t in tools),
                " / ".join(_fmt(_requests(chosen[t], "dst_requests"), 0) for t in tools),
                _fmt(median_of(chosen.get(SYNCER, []), "api_cpu_s"), 1),
            ]
        )
    return _table(header, rows)


def curl_table(data: Records) -> list[str]:
    """The curl GET | curl PUT pipe per large blob, against every contender."""
    tools = data.tools_present()
    rows = []
    for case in ("L512", "L2G"):
        pipe = data.select(case, CURL)
        wall = median_of(pipe, "wall")
        if wall is None:
            continue
        speed = (pipe[0].get("bytes") or 0) / wall / 2**20
        flow = data.median(case, SYNCER, "inflow")
        cells = [ratio(data.median(case, t), wall) for t in tools]
        rows.append([case, _fmt(wall), _fmt(speed, 0), *cells, ratio(flow, wall)])
    header = ("blob", "curl pipe s", "MiB/s", *(f"{t} / curl" for t in tools), "in-flow / curl")
    return _table(header, rows)


def scale_table(data: Records) -> list[str]:
    """No-op re-sync of the many-tags repository: time, requests per tag, RSS."""
    rows = []
    for tool in data.tools_present():
        chosen = data.select("scale no-op", tool)
        if not chosen:
            continue
        tags = chosen[0].get("tags") or 1
        src, dst = _requests(chosen, "src_requests"), _requests(chosen, "dst_requests")
        rows.append(
            [
                tool,
                str(tags),
                _fmt(median_of(chosen, "wall")),
                _fmt(median_of(chosen, "inflow")),
                f"{_fmt(src, 0)} / {_fmt(dst, 0)}",
                _fmt(((src or 0) + (dst or 0)) / tags),
                _fmt(median_of(chosen, "rss_tree_mib"), 0),
            ]
        )
    header = ("tool", "tags", "wall s", "in-flow s", "requests src / dst", "req per tag", "RSS MiB")
    return _table(header, rows)


def setups_table(data: Records) -> list[str]:
    """image-syncer and the Prefect floor on every Prefect set-up measured."""
    apis = sorted({r["api"] for r in data.all if r.get("api")}, key=_api_order)
    rows = []
    for api in apis:
        for case, tool, flags in _setup_places(data, api):
            chosen = data.select(case, tool, api=api, flags=flags)
            rules = chosen[0].get("rules") if chosen else None
            cpu = median_of(chosen, "api_cpu_s")
            per_rule = cpu / rules * 1000 if cpu is not None and rules else None
            rows.append(
                [
                    api,
                    case,
                    tool + (f" {flags}" if flags else ""),
                    str(rules or "-"),
                    _fmt(median_of(chosen, "wall")),
                    _fmt(median_of(chosen, "inflow")),
                    _fmt(cpu, 1),
                    _fmt(per_rule, 0),
                    str(len(chosen)),
                ]
            )
    header = (
        "API",
        "case",
        "tool",
        "rules",
        "wall s",
        "in-flow s",
        "API CPU s",
        "API CPU ms/rule",
        "runs",
    )
    return _table(header, rows)


def _api_order(api: str) -> int:
    return {"postgres": 0, "sqlite": 1, "temporary": 2}.get(api, 3)


#: Cases the set-ups table shows: what Prefect costs, not bytes.
SETUP_CASES = (
    "S cold",
    "S no-op",
    "1-rule no-op",
    "floor",
    "200-rule no-op",
    "200-rule floor",
    "demo first run",
    "demo re-run",
)


def _setup_places(data: Records, api: str) -> list[tuple[str, str, str | None]]:
    seen: dict[tuple[str, str, str | None], None] = {}
    for r in data.all:
        if (
            r.get("api") == api
            and r.get("link", "loopback") == "loopback"
            and r["case"] in SETUP_CASES
        ):
            seen.setdefault((r["case"], r["tool"], r.get("flags")), None)
    order = {SYNCER: 0, FLOOR_OURS: 1, FLOOR_ASYNC: 2}
    return sorted(seen, key=lambda p: (SETUP_CASES.index(p[0]), order.get(p[1], 3), p[2] or ""))


PHASES = ("to_flow", "flow", "after_flow", "exit")


def phases_table(data: Records) -> list[str]:
    """image-syncer's wall time by phase on the primary API (medians; `bench/phases.py`)."""
    rows = []
    for case in (*CASES, "scale no-op", "200-rule no-op"):
        chosen = [r for r in data.select(case, SYNCER) if r.get("phases")]
        if not chosen:
            continue
        cells = [case, _fmt(median_of(chosen, "wall"))]
        for phase in PHASES:
            values = [r["phases"][phase] for r in chosen if phase in r["phases"]]
            cells.append(_fmt(statistics.median(values) if values else None))
        cells.append(_fmt(median_of(chosen, "inflow")))
        rows.append(cells)
    header = ("case", "wall s", "start -> flow", "flow", "after flow", "exit", "in-flow (report)")
    return _table(header, rows)


def _kinds(records: Sequence[Record], side: str) -> str:
    """Median count per request kind, e.g. `GET manifest 60, HEAD blob 241`."""
    kinds = sorted({k for r in records for k in (r.get(side) or {})})
    parts = []
    for kind in kinds:
        value = statistics.median([(r.get(side) or {}).get(kind, 0) for r in records])
        parts.append(f"{kind} {value:g}")
    return ", ".join(parts) or "-"


def breakdown_table(data: Records) -> list[str]:
    """Request kinds per case and tool (medians), destination then source."""
    rows = []
    for link in ("loopback", "wan"):
        for case in (*CASES, "scale no-op", "200-rule no-op"):
            for tool in data.tools_present():
                chosen = data.select(case, tool, link=link)
                if chosen:
                    dst, src = _kinds(chosen, "dst_requests"), _kinds(chosen, "src_requests")
                    rows.append([f"{case} ({link})", tool, dst, src])
    return _table(("case", "tool", "destination requests", "source requests"), rows)


def render_all(records: Sequence[Record], primary: str = "postgres") -> str:
    """Every table, as Markdown, in the order the README shows them."""
    from bench.targets import targets_table

    data = Records(records, primary)
    parts = [
        f"## Loopback, image-syncer on the {primary} API (medians; ratio = ours / peer)",
        *contenders_table(data, "loopback"),
    ]
    if any(r.get("link") == "wan" for r in records):
        parts += ["", "## WAN delay line (medians)", *contenders_table(data, "wan")]
    parts += [
        "",
        "## Practical limit: curl GET | curl PUT of the large blob",
        *curl_table(data),
        "",
        "## Scale: no-op re-sync of one repository with many tags",
        *scale_table(data),
        "",
        "## Prefect set-ups: image-syncer and the Prefect floor (medians)",
        *setups_table(data),
        "",
        f"## image-syncer wall time by phase ({primary} API, medians, s)",
        *phases_table(data),
        "",
        "## Requests by kind (medians)",
        *breakdown_table(data),
        "",
        "## Targets (issue 13)",
        *targets_table(data),
    ]
    return "\n".join(parts)
