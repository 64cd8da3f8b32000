"""The quality gate and the version a release gets.

Against the latest released version of the same model:
- a headline metric lower than before by more than ``tolerance`` (absolute) fails;
- a different label set fails unless the release is declared major;
- the version bumps major for a new label set, minor when the first headline metric
  improved, patch otherwise (GTO's ``name@vX.Y.Z`` convention).

Against its baseline (the evaluation's verdict), first release or not: a candidate that
does not beat it (``beats_baseline`` false) fails unless released with
``--allow-below-baseline``, which the result records; nothing compared (no verdict, or
``beats_baseline`` null) fails nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from insectml.errors import ConfigError


@dataclass(frozen=True)
class GateResult:
    passed: bool
    bump: str  # major, minor, patch
    problems: tuple[str, ...]
    comparison: tuple[tuple[str, float | None, float], ...]  # (metric, previous, new)
    below_baseline_allowed: bool = False  # passed although it does not beat its baseline


def _span(verdict: dict) -> str:
    def num(x: float | None) -> str:
        return "—" if x is None else f"{x:.4f}"

    difference = verdict.get("difference")
    shown = "—" if difference is None else f"{difference:+.4f}"
    return f"{shown} [{num(verdict.get('low'))}, {num(verdict.get('high'))}]"


def verdict_text(verdict: dict | None) -> str:
    """One line on the candidate against its baseline: the evaluation's own sentence, else
    the metric, the baseline and the difference with its 95 % interval."""
    if verdict is None:
        return "no baseline compared"
    if verdict.get("sentence"):
        return verdict["sentence"]
    if verdict.get("beats_baseline") is None:
        return "no baseline compared"
    against = f"{verdict.get('metric', 'headline metric')} against {verdict.get('baseline', 'the baseline')}"
    return f"{against}: difference {_span(verdict)} (95% CI)"


def _below_baseline(verdict: dict | None) -> str | None:
    """The gate's problem line when ``verdict`` says the candidate does not beat its
    baseline; None when it does or nothing was compared."""
    if verdict is None or verdict.get("beats_baseline") is not False:
        return None
    return (
        f"the candidate does not beat its baseline: {verdict_text(verdict).rstrip('.')}; "
        "release it with --allow-below-baseline to override"
    )


def check(
    headline: dict[str, float],
    labels: list[str],
    previous: dict | None,
    tolerance: float = 0.0,
    major: bool = False,
    verdict: dict | None = None,
    allow_below_baseline: bool = False,
) -> GateResult:
    """``previous``: the last release's card (``headline``, ``labels``) or None for a first
    release; ``verdict``: the candidate's evaluation against its baseline, or None."""
    below = _below_baseline(verdict)
    allowed = below is not None and allow_below_baseline
    baseline_problems = [below] if below is not None and not allow_below_baseline else []
    if previous is None:
        comparison = tuple((k, None, v) for k, v in headline.items())
        return GateResult(not baseline_problems, "major", tuple(baseline_problems), comparison, allowed)
    before = previous.get("headline", {})
    problems = []
    comparison = []
    for name, value in headline.items():
        old = before.get(name)
        comparison.append((name, old, value))
        if old is not None and value < old - tolerance:
            problems.append(
                f"{name} {value:.4f} is below the released {old:.4f} by more than the tolerance {tolerance:g}"
            )
    labels_changed = sorted(labels) != sorted(previous.get("labels", []))
    if labels_changed and not major:
        added = sorted(set(labels) - set(previous.get("labels", [])))
        removed = sorted(set(previous.get("labels", [])) - set(labels))
        problems.append(
            f"the label set changed (added {len(added)}: {', '.join(added[:3]) or '-'}; "
            f"removed {len(removed)}: {', '.join(removed[:3]) or '-'}); release it with --major"
        )
    first = next(iter(headline))
    if major or labels_changed:
        bump = "major"
    elif before.get(first) is not None and headline[first] > before[first]:
        bump = "minor"
    else:
        bump = "patch"
    problems += baseline_problems
    return GateResult(not problems, bump, tuple(problems), tuple(comparison), allowed)


_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def semver(version: str) -> tuple[int, int, int]:
    """``v1.2.3`` as ``(1, 2, 3)``, for ordering versions. Anything else, a pre-release
    (``v1.2.0-rc.1``) or build tag among them, is a :class:`ConfigError`: the gate bumps
    released versions only."""
    found = _VERSION.fullmatch(str(version))
    if found is None:
        raise ConfigError(
            f"version {version!r} is not vMAJOR.MINOR.PATCH: the release gate orders and bumps released "
            "versions only (a pre-release or build tag such as -rc.1 is not one)"
        )
    major, minor, patch = (int(x) for x in found.groups())
    return major, minor, patch


def next_version(previous: str | None, bump: str) -> str:
    """``v1.2.3`` bumped; the first release is ``v1.0.0``."""
    if previous is None:
        return "v1.0.0"
    major, minor, patch = semver(previous)
    if bump == "major":
        return f"v{major + 1}.0.0"
    if bump == "minor":
        return f"v{major}.{minor + 1}.0"
    return f"v{major}.{minor}.{patch + 1}"
