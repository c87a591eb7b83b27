"""The prune check across rules: a pruning rule must be its destination repository's only writer.

Pruning deletes destination tags that left the rule's selection, so it is
refused at load time whenever that selection cannot be the whole truth about
the repository: another rule writes there too (here), the rule renames tags,
or its source names digests instead of tags (per rule, `rules.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncer_core.errors import RuleError

if TYPE_CHECKING:
    from syncer_core.config.rules import RuleSet, SyncRule

__all__ = ["check_prune_targets"]


def check_prune_targets(rules: RuleSet) -> None:
    """Refuse a pruning rule whose destination repository another rule also writes.

    Raises:
        RuleError: naming the file and the pruning rule's key, and the other rule.
    """
    writers: dict[str, list[SyncRule]] = {}
    for rule in rules.rules:
        writers.setdefault(rule.target.repository.name, []).append(rule)
    for rule in rules.rules:
        others = [o for o in writers[rule.target.repository.name] if o is not rule]
        if rule.prune and others:
            raise RuleError(
                f"prune: refused, rule {others[0].name!r} also writes to "
                f"{rule.target.repository.name} (its tags would be pruned as stale)",
                file=rules.file,
                key=rule.key,
            )
