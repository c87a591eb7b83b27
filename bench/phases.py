"""Split one image-syncer run's wall time into phases, from its Prefect log timestamps.

    python bench/phases.py WORKDIR/logs     # runs kept with `bench/run.py --workdir`

Phases (seconds):
- `to_flow`: process start -> the top flow's "Beginning flow run" (imports,
  the temporary API server if any, run creation);
- `to_server_start` (temporary API only): process start -> "Starting
  temporary server" (Python start-up and imports of flows/Prefect);
- `server_start_to_flow` (temporary API only): -> the top flow's "Beginning
  flow run" (the temporary API server starts; the flow run is created);
- `flow`: -> the top flow's "Finished in state" (the flow body, incl. subflows);
- `after_flow`: -> the last log line (temporary API: "Stopping temporary
  server", after waiting until every run is recorded, `flows/records.py`);
- `exit`: -> process end (server stop, interpreter exit).

Log lines carry local wall-clock times with millisecond resolution
(`HH:MM:SS.mmm | LEVEL | ...`), so phases are good to a few milliseconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["syncer_phases"]

_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \| \w+\s*\| (.*)$")
_TOP_BEGIN = re.compile(r"^Flow run '[^']+' - Beginning flow run ")
_TOP_END = re.compile(r"^Flow run '(?!rule )[^']+' - Finished in state ")


def _epoch(match: re.Match[str], day: dt.date) -> float:
    hh, mm, ss, ms = (int(match.group(i)) for i in range(1, 5))
    moment = dt.datetime.combine(day, dt.time(hh, mm, ss, ms * 1000))
    return moment.timestamp()


def _events(text: str, started_at: float) -> dict[str, float]:
    """Epoch times of the marker lines (the first begin, the last top-level end, the last line)."""
    day = dt.datetime.fromtimestamp(started_at).date()
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        when = _epoch(match, day)
        if when < started_at - 60:  # the run crossed midnight
            when += 86400
        message = match.group(5)
        if "Starting temporary server" in message:
            found.setdefault("server_start", when)
        elif _TOP_BEGIN.match(message):
            found.setdefault("flow_begin", when)
        elif _TOP_END.match(message):
            found["flow_end"] = when
        found["last_line"] = when
    return found


def syncer_phases(err_path: Path, started_at: float, ended_at: float) -> dict[str, float]:
    """Phase durations of one run from its stderr log; missing markers are left out."""
    if not err_path.exists():
        return {}
    marks = _events(err_path.read_text(errors="replace"), started_at)
    order = [
        ("to_flow", "start", "flow_begin"),
        ("to_server_start", "start", "server_start"),
        ("server_start_to_flow", "server_start", "flow_begin"),
        ("flow", "flow_begin", "flow_end"),
        ("after_flow", "flow_end", "last_line"),
        ("exit", "last_line", "end"),
    ]
    points = {"start": started_at, "end": ended_at, **marks}
    return {
        name: round(points[b] - points[a], 3) for name, a, b in order if a in points and b in points
    }


def _birth_time(path: Path) -> float | None:
    """File creation time (`stat %W`), 0/unsupported -> None."""
    out = subprocess.run(["stat", "-c", "%W", str(path)], capture_output=True, text=True)
    value = out.stdout.strip()
    return float(value) if value.isdigit() and int(value) > 0 else None


def main(argv: Sequence[str] | None = None) -> int:
    """Phases of every image-syncer run in a kept `logs/` directory (start = file birth time)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("logs", type=Path)
    args = p.parse_args(argv)
    for err in sorted(args.logs.glob("*-image-syncer-*.err")):
        started = _birth_time(err.with_suffix(".out")) or _birth_time(err)
        if started is None:
            print(f"{err.name}: no birth time", file=sys.stderr)
            continue
        phases = syncer_phases(err, started, err.stat().st_mtime)
        shown = " ".join(f"{k}={v:.2f}" for k, v in phases.items() if k != "exit")
        print(f"{err.stem}: {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
