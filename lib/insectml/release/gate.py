"""The quality gate and the version a release gets.

Against the latest released version of the same model:
- a headline metric lower than before by more than ``tolerance`` (absolute) fails;
- a different label set fails unless the release is declared major;
- the version bumps major for a new label set, minor when the first headline metric
  improved, patch otherwise (GTO's ``name@vX.Y.Z`` convention).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateResult:
    passed: bool
    bump: str  # major, minor, patch
    problems: tuple[str, ...]
    comparison: tuple[tuple[str, float | None, float], ...]  # (metric, previous, new)


def check(
    headline: dict[str, float],
    labels: list[str],
    previous: dict | None,
    tolerance: float = 0.0,
    major: bool = False,
) -> GateResult:
    """``previous``: the last release's card (``headline``, ``labels``) or None for a first release."""
    if previous is None:
        return GateResult(True, "major", (), tuple((k, None, v) for k, v in headline.items()))
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
    return GateResult(not problems, bump, tuple(problems), tuple(comparison))


def semver(version: str) -> tuple[int, int, int]:
    """``v1.2.3`` as ``(1, 2, 3)``, for ordering versions."""
    major, minor, patch = (int(x) for x in version.lstrip("v").split("."))
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
