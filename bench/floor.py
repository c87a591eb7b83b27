"""The Prefect floor: what our flow structure costs when the rules do no work at all.

    python bench/floor.py --rules 20 --model ours|async [--concurrency N] [--report FILE]

A parent flow runs `--rules` rule subflows, each running ONE trivial task
and touching no registry: the least Prefect can cost for image-syncer's
structure (a flow run per rule, its check task). Two models:

- `ours`: image-syncer's own concurrency model (`flows/sync.py:_run_rules`,
  `flows/rule.py:_check`): a sync parent flow; rule subflows submitted
  through a `ThreadPoolExecutor`, each thread running in a copy of the
  parent's context, heartbeats off; the rule flow given a
  `ThreadPoolTaskRunner`; its task called (not submitted) with the
  `--retries` options image-syncer gives its check task.
- `async`: Prefect's idiomatic one: an async parent flow gathering async
  rule subflows under an `asyncio.Semaphore`, each awaiting an async task.

Both run as a CLI run of image-syncer does: its environment defaults, the
flow-run heartbeat off, the same `PREFECT_*` environment (no
`PREFECT_API_URL`: Prefect's temporary API server, whose records are waited
for before exit). The concurrency defaults to what image-syncer picks
(`flows.sync.default_rule_concurrency`, read inside the parent flow).
Prints, and with `--report` writes, one JSON object; `seconds` is measured
inside the parent flow, from its first line to its end. Exit 0 only if
every subflow (and so its task) Completed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import functools
import json
import sys
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

if __package__ in (None, ""):  # run as a script: make `bench`, `flows`, `syncer_core` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows import environment

environment.apply_defaults()  # before Prefect is imported, as flows/sync.py does

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.client.schemas.objects import State  # noqa: E402
from prefect.settings import (  # noqa: E402
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    get_current_settings,
    temporary_settings,
)
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from flows.records import wait_until_recorded  # noqa: E402
from flows.states import state_data  # noqa: E402
from flows.sync import default_rule_concurrency  # noqa: E402
from flows.tasks import retry_transient, retrying  # noqa: E402

__all__ = ["MODELS", "run_floor"]

MODELS = ("ours", "async")
T = TypeVar("T")
#: image-syncer's CLI defaults: `--proc 5` sizes each rule's task runner, `--retries 2`.
_PROC, _RETRIES = 5, 2


def _rule_name(index: int) -> str:
    return f"floor/r{index:03d} -> floor/r{index:03d}"


# -- ours: threads, as flows/sync.py and flows/rule.py run rules ---------------------------


@task(
    name="floor-check",
    task_run_name="check {rule}",
    cache_policy=NO_CACHE,
    retry_condition_fn=retry_transient,
)
def floor_check(session_id: str, rule_index: int, rule: str, retries: int = 0) -> int:
    """The check task's signature and options, with nothing to check."""
    return rule_index


@flow(name="floor-rule", flow_run_name="rule {rule}", log_prints=False)
def floor_rule(
    session_id: str, rule_index: int, rule: str, retries: int = 2, limited: bool = False
) -> int:
    """One rule: its check task called in the rule's thread, as `flows.rule._check` does."""
    state = retrying(floor_check, retries)(session_id, rule_index, rule, retries, return_state=True)
    data = state_data(state)
    if isinstance(data, BaseException):
        raise data
    assert isinstance(data, int)
    return data


def _run_floor_rule(rule_flow: Any, index: int) -> State[int] | BaseException:
    try:
        state: State[int] = rule_flow(
            "floor", index, _rule_name(index), _RETRIES, False, return_state=True
        )
    except Exception as error:  # noqa: BLE001 - one rule's crash must not stop the others
        return error
    return state


def _run_floor_rules(rules: int, concurrency: int) -> list[State[int] | BaseException]:
    """`flows.sync._run_rules` with the floor's rule flow."""
    runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=max(2, _PROC + 2))
    rule_flow = floor_rule.with_options(task_runner=runner)  # type: ignore[arg-type]
    with (
        ThreadPoolExecutor(max(1, min(concurrency, rules or 1))) as pool,
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        futures = []
        for i in range(rules):
            context = contextvars.copy_context()
            futures.append(
                pool.submit(context.run, functools.partial(_run_floor_rule, rule_flow, i))
            )
        return [future.result() for future in futures]


@flow(name="floor-ours", log_prints=False)
def floor_ours(rules: int, concurrency: int | None = None) -> dict[str, Any]:
    """The parent flow of the `ours` model."""
    started = time.monotonic()
    chosen = concurrency or default_rule_concurrency()
    states = _run_floor_rules(rules, chosen)
    completed = sum(1 for s in states if isinstance(s, State) and s.is_completed())
    return _summary("ours", rules, chosen, time.monotonic() - started, completed)


# -- async: Prefect's idiomatic concurrent subflows ---------------------------------------


@task(name="floor-check-async", task_run_name="check {rule}", cache_policy=NO_CACHE)
async def floor_check_async(rule_index: int, rule: str) -> int:
    """A trivial async task."""
    return rule_index


@flow(name="floor-rule-async", flow_run_name="rule {rule}", log_prints=False)
async def floor_rule_async(rule_index: int, rule: str) -> int:
    """One rule as an async subflow awaiting its one task."""
    return await floor_check_async(rule_index, rule)


@flow(name="floor-async", log_prints=False)
async def floor_async(rules: int, concurrency: int | None = None) -> dict[str, Any]:
    """The parent flow of the `async` model: subflows gathered under a semaphore."""
    started = time.monotonic()
    chosen = concurrency or default_rule_concurrency()
    gate = asyncio.Semaphore(chosen)

    async def one(index: int) -> State[int]:
        async with gate:
            state: State[int] = await floor_rule_async(index, _rule_name(index), return_state=True)
            return state

    states = await asyncio.gather(*(one(i) for i in range(rules)), return_exceptions=True)
    completed = sum(1 for s in states if isinstance(s, State) and s.is_completed())
    return _summary("async", rules, chosen, time.monotonic() - started, completed)


# -- the run ----------------------------------------------------------------------------------


def _summary(model: str, rules: int, concurrency: int, seconds: float, done: int) -> dict[str, Any]:
    return {
        "model": model,
        "rules": rules,
        "concurrency": concurrency,
        "seconds": round(seconds, 3),
        "subflows_completed": done,
    }


async def _await(call: Awaitable[T]) -> T:
    return await call  # `asyncio.run` takes a coroutine; an async flow's call is an awaitable


def run_floor(model: str, rules: int, concurrency: int | None = None) -> tuple[dict[str, Any], Any]:
    """Run one model as a CLI run does; return its summary and the parent's flow run id."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    # As flows/cli.py: no flow-run heartbeat for a CLI run (the parent's included).
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        if model == "ours":
            state = floor_ours(rules, concurrency, return_state=True)
        else:
            state = asyncio.run(_await(floor_async(rules, concurrency, return_state=True)))
    flow_run_id = state.state_details.flow_run_id
    if not get_current_settings().api.url and flow_run_id is not None:
        wait_until_recorded(flow_run_id)  # as flows/cli.py: before the temporary API stops
    summary = state.result(raise_on_failure=False)
    if not isinstance(summary, dict):
        summary = _summary(model, rules, concurrency or 0, float("nan"), 0)
    return summary, flow_run_id


def main(argv: list[str] | None = None) -> int:
    """Run the floor case; exit 0 only if every subflow Completed."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rules", type=int, default=20, help="rule subflows (default: 20)")
    p.add_argument("--model", choices=MODELS, required=True, help="concurrency model")
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="subflows at once (default: image-syncer's: 1 on the temporary API, else 4)",
    )
    p.add_argument("--report", metavar="FILE", help="also write the JSON to FILE")
    args = p.parse_args(argv)
    if args.rules < 1:
        p.error(f"--rules must be at least 1, got {args.rules}")
    if args.concurrency is not None and args.concurrency < 1:
        p.error(f"--concurrency must be at least 1, got {args.concurrency}")
    summary, _ = run_floor(args.model, args.rules, args.concurrency)
    text = json.dumps(summary)
    print(text, flush=True)
    if args.report:
        Path(args.report).write_text(text + "\n")
    return 0 if summary["subflows_completed"] == args.rules else 1


if __name__ == "__main__":
    sys.exit(main())
