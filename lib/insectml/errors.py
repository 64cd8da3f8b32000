"""Errors a user can cause.

Every subclass of :class:`UserError` is caught once, in the CLI, and printed as one
line on stderr with exit code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input, arguments or environment."""

    exit_code = 2


class InputFileError(UserError):
    """A file the user pointed at is missing, unreadable or malformed."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ValidationFailed(UserError):
    """A dataset has one or more problems; ``problems`` lists every one of them."""

    def __init__(self, source: object, problems: list[str], report: object | None = None) -> None:
        self.problems = problems
        where = f"; every problem is listed in {report}" if report else ""
        first = problems[0] if problems else "unknown problem"
        super().__init__(f"{source}: {len(problems)} problem(s) found, first: {first}{where}")


class ConfigError(UserError):
    """A parameter or option has a value that cannot work."""
