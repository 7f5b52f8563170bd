"""Problems found while reading data: raised at once (strict) or counted into a report (lenient)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from retriever.types import DataError


@dataclass(frozen=True)
class Problem:
    kind: str
    path: str
    line: int | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message} Fix: {self.fix}"


@dataclass
class ValidationReport:
    """Collects problems instead of raising; every skipped record is counted by kind."""

    max_examples: int = 20
    counts: Counter = field(default_factory=Counter)
    examples: list[Problem] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        self.counts[problem.kind] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(problem)

    def add_error(self, error: DataError) -> None:
        """Count a DataError that stopped a whole file from being read."""
        self.add(Problem("unreadable_file", error.path or "input", error.line, error.problem, error.fix))

    @property
    def ok(self) -> bool:
        return not self.counts

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": dict(sorted(self.counts.items())),
            "examples": [str(p) for p in self.examples],
        }


def flag(report: ValidationReport | None, kind: str, path: str, line: int | None, message: str, fix: str) -> None:
    """Raise a DataError when strict (no report), else count the problem; the caller then skips the record."""
    if report is None:
        raise DataError(path, line, message, fix)
    report.add(Problem(kind, path, line, message, fix))
