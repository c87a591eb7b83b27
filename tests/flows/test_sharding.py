"""Sharding rules for fan-out: grouped by source repository, balanced, complete."""

from __future__ import annotations

import pytest

from flows.fanout import shard_rules
from syncer_core.config import build_rules


def rules(*sources: str):
    data = {src: f"127.0.0.1:2/m/{i}" for i, src in enumerate(sources)}
    return build_rules(data, env={}).rules


RULES = rules(
    "127.0.0.1:1/a/x:1",
    "127.0.0.1:1/a/x:2",
    "127.0.0.1:1/a/y",
    "127.0.0.1:1/b/z:/v/",
    "127.0.0.1:1/a/x:3",
)


def test_one_shard_per_source_repository_by_default():
    shards = shard_rules(RULES)
    assert sorted(map(sorted, shards)) == [[0, 1, 4], [2], [3]]


@pytest.mark.parametrize("count", [1, 2, 3, 10])
def test_groups_stay_whole_and_every_rule_is_in_exactly_one_shard(count):
    shards = shard_rules(RULES, count)
    assert len(shards) == min(count, 3)
    flat = sorted(i for shard in shards for i in shard)
    assert flat == list(range(len(RULES)))
    for shard in shards:
        assert {0, 1, 4} <= set(shard) or not ({0, 1, 4} & set(shard))


def test_balancing_puts_the_largest_group_alone_when_possible():
    shards = shard_rules(RULES, 2)
    assert sorted(map(len, shards)) == [2, 3]
