"""Remedies that pull in opposite directions, and how one diagnosis avoids giving both.

Each remedy is a sentence (``"set train.lr=0.001 (10x lower than 0.01)"``). :data:`REMEDY_KINDS`
says which direction a sentence pushes a setting in (read from its words by a pattern), and
:data:`CONFLICTS` which directions contradict each other ("use fewer layers" against "use a
deeper network"). :func:`resolve_conflicts` walks the findings most serious first and drops a
remedy that contradicts one already given, saying so in the finding that lost it: the more
serious (or, at equal severity, the more basic: the network before the training) finding wins.

Example::

    >>> from deepwell.diagnostics.evidence import Finding
    >>> a = Finding("vanishing_gradient", "warning", "t", "e", remedies=["use fewer layers (model.depth is 20)"])
    >>> b = Finding("underfitting", "warning", "t", "e", remedies=["use a deeper network (model.depth=40)", "train longer"])
    >>> resolved = resolve_conflicts([a, b])
    >>> resolved[1].remedies, resolved[1].withheld
    (['train longer'], ["use a deeper network (model.depth=40): contradicts the advice for 'vanishing_gradient'"])
"""

from __future__ import annotations

import dataclasses
import re

from deepwell.diagnostics.evidence import Finding

__all__ = ["REMEDY_KINDS", "CONFLICTS", "remedy_kinds", "conflicting_pairs", "resolve_conflicts"]

# direction -> the words that say it (lower-case regex over the remedy sentence)
REMEDY_KINDS: dict[str, str] = {
    "lr_down": r"x lower than|lower (the )?learning rate",
    "lr_up": r"x higher\b|raise the learning rate",
    "depth_down": r"fewer layers",
    "depth_up": r"deeper network|more layers|larger network \([^)]*model\.depth",
    "capacity_down": r"smaller network|narrower",
    "capacity_up": r"larger network|wider network",
    "regularise_more": r"\badd model\.dropout|\badd train\.penalty|more dropout|stronger penalty",
    "regularise_less": r"remove regularisation|model\.dropout=none|train\.penalty=none|less dropout|weaker penalty",
    "train_longer": r"train longer",
    "train_shorter": r"early_stopping|stop earlier",
}

# pairs of directions that cannot both be right for one network
CONFLICTS: frozenset[frozenset[str]] = frozenset(frozenset(pair) for pair in [
    ("lr_down", "lr_up"), ("depth_down", "depth_up"), ("capacity_down", "capacity_up"),
    ("regularise_more", "regularise_less"), ("train_longer", "train_shorter"),
])

_PATTERNS = {kind: re.compile(pattern) for kind, pattern in REMEDY_KINDS.items()}


def remedy_kinds(remedy: str) -> set[str]:
    """The directions one remedy sentence pushes in (empty for neutral advice such as 'use model.init=he')."""
    text = remedy.lower()
    return {kind for kind, pattern in _PATTERNS.items() if pattern.search(text)}


def _clashes(kinds: set[str], taken: set[str]) -> bool:
    return any(frozenset((a, b)) in CONFLICTS for a in kinds for b in taken)


def conflicting_pairs(remedies: list[str]) -> list[tuple[str, str]]:
    """Every pair of remedies in the list that contradict each other (what a diagnosis must never contain)."""
    kinds = [remedy_kinds(r) for r in remedies]
    return [(remedies[i], remedies[j]) for i in range(len(remedies)) for j in range(i + 1, len(remedies))
            if _clashes(kinds[i], kinds[j])]


def resolve_conflicts(findings: list[Finding]) -> list[Finding]:
    """The findings (in their order: most serious first) with every remedy that contradicts an earlier one removed.

    The finding that lost a remedy lists it under ``withheld`` with the reason, so nothing is dropped
    silently; one that lost them all is told to fix the findings above first.
    """
    taken: dict[str, str] = {}  # direction -> the rule that advised it
    resolved = []
    for finding in findings:
        kept, dropped = [], []
        for remedy in finding.remedies:
            kinds = remedy_kinds(remedy)
            rival = next((taken[t] for t in taken for k in kinds if frozenset((k, t)) in CONFLICTS), None)
            if rival is None:
                kept.append(remedy)
                taken.update({k: finding.rule for k in kinds if k not in taken})
            else:
                dropped.append(f"{remedy}: contradicts the advice for '{rival}'")
        if dropped:
            finding = dataclasses.replace(finding, remedies=kept or ["fix the findings above first"],
                                          withheld=[*finding.withheld, *dropped])
        resolved.append(finding)
    return resolved
