"""Run-wide rule options: `--prune` and `--referrers` turn the option on for every rule.

The rules made pruning by the flag get the same load-time checks as those
that ask for it in the images file (`rules.check_rule_options`,
`prunecheck.check_prune_targets`), so `--prune` cannot delete what a
file-level `prune: true` would have refused to.
"""

from __future__ import annotations

from syncer_core.config.prunecheck import check_prune_targets
from syncer_core.config.rules import RuleSet, check_rule_options

__all__ = ["apply_run_flags"]


def apply_run_flags(rules: RuleSet, *, prune: bool = False, referrers: bool = False) -> RuleSet:
    """Turn `prune` / `referrers` on for every rule, then run the prune checks.

    Raises:
        RuleError: a rule cannot prune (`--prune` named in the message).
    """
    updated = []
    for rule in rules.rules:
        changes = {"prune": rule.prune or prune, "referrers": rule.referrers or referrers}
        new = rule.model_copy(update=changes)
        if prune and not rule.prune:
            check_rule_options(new, file=rules.file, prefix="--prune (applies to every rule): ")
        updated.append(new)
    result = RuleSet(file=rules.file, rules=tuple(updated))
    check_prune_targets(result)
    return result
