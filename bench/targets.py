"""Issue 13's targets, each computed from records measured side by side in one run.

Every target is a ratio (or, for the embedded API and the 200-rule no-op, a
bound the issue states in seconds) with the places it compares. A target
whose inputs were not measured (no original binary, no WAN, a set-up left
out) shows `-` and "not measured", never a pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.harness import CURL, FLOOR_ASYNC, FLOOR_OURS, ORIGINAL, SKOPEO, SYNCER
from bench.report import Records, _fmt, _table

__all__ = ["Target", "targets", "targets_table"]


@dataclass(frozen=True)
class Target:
    """One target: what is compared, the bound, and how to measure it."""

    name: str
    bound: float
    unit: str  # "x" for a ratio, "s" for seconds
    measure: Callable[[Records], float | None]


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _wan(case: str, peer: str) -> Callable[[Records], float | None]:
    return lambda d: _ratio(d.median(case, SYNCER, link="wan"), d.median(case, peer, link="wan"))


def _floor(d: Records, api: str, case: str = "floor") -> float | None:
    floors = [d.median(case, t, "inflow", api=api) for t in (FLOOR_OURS, FLOOR_ASYNC)]
    known = [f for f in floors if f is not None]
    return min(known) if known else None


def _best_fixed(d: Records, api: str) -> float | None:
    fixed = {r["flags"] for r in d.all if r.get("api") == api and r.get("flags")}
    values = [d.median("S no-op", SYNCER, "inflow", api=api, flags=f) for f in fixed]
    known = [v for v in values if v is not None]
    return min(known) if known else None


def _rss_growth(d: Records) -> float | None:
    return _ratio(d.median("L2G", SYNCER, "rss_tree_mib"), d.median("L512", SYNCER, "rss_tree_mib"))


def targets() -> list[Target]:
    """The issue's targets, in its order."""
    return [
        Target("WAN: S cold vs skopeo", 0.2, "x", _wan("S cold", SKOPEO)),
        Target("WAN: S cold vs the original", 0.5, "x", _wan("S cold", ORIGINAL)),
        Target("WAN: S no-op vs skopeo", 0.1, "x", _wan("S no-op", SKOPEO)),
        Target("WAN: S no-op vs the original", 0.25, "x", _wan("S no-op", ORIGINAL)),
        Target("WAN: delta vs skopeo", 0.2, "x", _wan("delta", SKOPEO)),
        Target(
            "SQLite: S no-op in-flow vs the Prefect floor (the faster model)",
            1.2,
            "x",
            lambda d: _ratio(
                d.median("S no-op", SYNCER, "inflow", api="sqlite"), _floor(d, "sqlite")
            ),
        ),
        Target(
            "SQLite: S no-op in-flow, default vs the best fixed --rule-concurrency",
            1.05,
            "x",
            lambda d: _ratio(
                d.median("S no-op", SYNCER, "inflow", api="sqlite"), _best_fixed(d, "sqlite")
            ),
        ),
        Target(
            "SQLite: S cold whole process vs skopeo",
            1.5,
            "x",
            lambda d: _ratio(d.median("S cold", SYNCER, api="sqlite"), d.median("S cold", SKOPEO)),
        ),
        Target(
            "PostgreSQL: S cold in-flow vs skopeo",
            0.8,
            "x",
            lambda d: _ratio(
                d.median("S cold", SYNCER, "inflow", api="postgres"), d.median("S cold", SKOPEO)
            ),
        ),
        Target(
            "PostgreSQL: S no-op in-flow vs skopeo",
            2.0,
            "x",
            lambda d: _ratio(
                d.median("S no-op", SYNCER, "inflow", api="postgres"), d.median("S no-op", SKOPEO)
            ),
        ),
        Target(
            "Embedded: one-rule no-op, whole process",
            4.0,
            "s",
            lambda d: d.median("1-rule no-op", SYNCER, api="temporary"),
        ),
        Target(
            "Embedded: the demo's first run, whole process",
            12.0,
            "s",
            lambda d: d.median("demo first run", SYNCER, api="temporary"),
        ),
        Target(
            "200-rule no-op in-flow on PostgreSQL",
            20.0,
            "s",
            lambda d: d.median("200-rule no-op", SYNCER, "inflow", api="postgres"),
        ),
        Target(
            "L2G in-flow vs the curl pipe",
            1.05,
            "x",
            lambda d: _ratio(d.median("L2G", SYNCER, "inflow"), d.median("L2G", CURL)),
        ),
        Target("RSS flat: L2G vs L512 peak RSS", 1.05, "x", _rss_growth),
    ]


def targets_table(data: Records) -> list[str]:
    """Target, bound, measured value, and whether it is met."""
    rows = []
    for target in targets():
        value = target.measure(data)
        verdict = (
            "not measured" if value is None else ("met" if value <= target.bound else "MISSED")
        )
        rows.append(
            [
                target.name,
                f"≤ {target.bound:g}{target.unit}",
                "-" if value is None else _fmt(value) + target.unit,
                verdict,
            ]
        )
    return _table(("target", "bound", "measured", "verdict"), rows)
