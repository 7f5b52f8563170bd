"""Problems found while reading data: raised at once (strict) or counted into a report.

Two kinds of problem. *Record-level* problems with one safe reading — an empty document (still a document: dense
encodes it, Lucene indexes it with no terms), a judged document missing from the corpus (kept for evaluation:
never retrieved, as trec_eval scores it), judgments of an unknown query (dropped), a repeated judgment (the last
one wins, as BEIR's loader reads it) — are ACCEPTED: counted, warned about and listed, and the run goes on.
Everything else is *corruption* (a line that is not JSON, a wrong column count, a non-UTF-8 byte): an error
naming file, line and fix, unless the policy says to skip malformed records.

The policy, from ``DRP_DATA_POLICY`` (the CLI's ``--strict`` / ``--skip-malformed`` and ``[run] strict`` set it):
``accept`` (default: accepted problems counted, corruption raises), ``strict`` (every problem raises),
``skip-malformed`` (every problem counted, corrupt records skipped)."""

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


ACCEPTED = frozenset({"empty_document", "empty_query", "unknown_document", "unknown_query", "duplicate_judgment"})
POLICIES = ("accept", "strict", "skip-malformed")


@dataclass
class ValidationReport:
    """Collects problems instead of raising; every skipped record is counted by kind. ``accept_only``: only the
    ACCEPTED kinds are counted, corruption still raises (the default policy)."""

    max_examples: int = 20
    counts: Counter = field(default_factory=Counter)
    examples: list[Problem] = field(default_factory=list)
    accept_only: bool = False
    by_file: Counter = field(default_factory=Counter)  # (path, kind) -> count

    def add(self, problem: Problem) -> None:
        self.counts[problem.kind] += 1
        self.by_file[(problem.path, problem.kind)] += 1
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

    @property
    def corrupt(self) -> int:
        """Problems that are corruption (not one of the ACCEPTED record-level kinds)."""
        return sum(n for k, n in self.counts.items() if k not in ACCEPTED)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "problems": dict(sorted(self.counts.items())),
            "accepted": sum(n for k, n in self.counts.items() if k in ACCEPTED),
            "corrupt": self.corrupt,
            "examples": [str(p) for p in self.examples],
        }


def flag(report: ValidationReport | None, kind: str, path: str, line: int | None, message: str, fix: str) -> None:
    """Raise a DataError when strict (no report) or when an accept-only report meets corruption; else count the
    problem. The caller then skips a corrupt record and keeps an accepted one."""
    if report is None or (report.accept_only and kind not in ACCEPTED):
        raise DataError(path, line, message, fix)
    report.add(Problem(kind, path, line, message, fix))


def data_policy() -> str:
    import os

    from retriever.types import ConfigError

    policy = os.environ.get("DRP_DATA_POLICY", "accept")
    if policy not in POLICIES:
        raise ConfigError(f"DRP_DATA_POLICY must be one of {list(POLICIES)}, got {policy!r}.")
    return policy


def policy_report() -> ValidationReport | None:
    """The report a reader should get under the current policy (None: strict, every problem raises)."""
    policy = data_policy()
    if policy == "strict":
        return None
    return ValidationReport(accept_only=policy == "accept")


def read_checked(reader, path, source: str | None = None):
    """``reader(path, report)`` under the current policy, its accepted problems warned about and remembered."""
    report = policy_report()
    out = reader(path, report)
    warn_accepted(report, source or str(path))
    return out


_SEEN: list[ValidationReport] = []


def warn_accepted(report: ValidationReport | None, source: str) -> None:
    """Warn on stderr about what a reader accepted or skipped, once per kind, and remember it for the command's
    JSON (``accepted_problems``)."""
    import logging

    if report is None or report.ok:
        return
    log = logging.getLogger("densepipe.data")
    warned = {key: n for r in _SEEN for key, n in r.by_file.items()}
    for (path, kind), count in sorted(report.by_file.items()):
        if warned.get((path, kind)) == count:  # the same file read again by a later stage: said already
            continue
        example = next((p for p in report.examples if p.kind == kind and p.path == path), None)
        log.warning("densepipe: warning: %s: %d x %s%s", source, count, kind,
                    f" (e.g. {example.path}:{example.line or ''} {example.message})" if example else "")
    _SEEN.append(report)


def reset_accepted() -> None:
    """Forget the reports of earlier commands (each CLI invocation lists its own)."""
    _SEEN.clear()


def accepted_problems() -> dict[str, int]:
    """Every problem counted by readers in this process so far (for the command's JSON); a file that several
    stages read is counted once."""
    per_file: dict = {}
    for report in _SEEN:
        for key, n in report.by_file.items():
            per_file[key] = max(per_file.get(key, 0), n)
    total: Counter = Counter()
    for (_, kind), n in per_file.items():
        total[kind] += n
    return dict(sorted(total.items()))
