"""Hard negatives for contrastive training, mined from a ``Searcher``'s ranking, with false-negative filtering.

For each (query, positive) pair the searcher's top ``depth`` candidates are taken; a candidate is dropped when
it is a known positive of the query (any grade > 0), or — positive-aware filtering, after NV-Retriever (Moreira
et al., 2024) — when its score is above ``margin`` times the positive's score (``relative``) or above the
positive's score minus ``margin`` (``absolute``): such a near-tie with the positive is more often an unjudged
relevant document than a negative. Negatives are then sampled from the remaining candidates whose rank lies in
``rank_range``. Every drop is counted in the report.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from retriever.types import ConfigError, DataError, Qrels, Queries, Searcher

ScoreFn = Callable[[str, Sequence[str]], Sequence[float]]  # (query id, doc ids) -> the searcher's scores


@dataclass(frozen=True)
class MiningConfig:
    depth: int = 100
    rank_range: tuple[int, int] = (1, 100)  # 1-based, inclusive start, exclusive end
    num_negatives: int = 8
    margin: float | None = 0.95  # None: no positive-aware filtering
    margin_mode: str = "relative"  # "relative": drop score > margin * pos; "absolute": drop score > pos - margin
    seed: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.rank_range
        if not 1 <= lo < hi:
            raise ConfigError(f"rank_range must satisfy 1 <= start < end, got {self.rank_range}.")
        if self.depth < 1 or self.num_negatives < 1:
            raise ConfigError("depth and num_negatives must be >= 1.")
        if self.margin_mode not in ("relative", "absolute"):
            raise ConfigError(f"margin_mode must be 'relative' or 'absolute', got {self.margin_mode!r}.")


@dataclass(frozen=True)
class MinedExample:
    query_id: str
    positive_id: str
    negative_ids: tuple[str, ...]
    negative_scores: tuple[float, ...]
    positive_score: float | None
    source: str


@dataclass
class MiningReport:
    queries: int = 0
    pairs: int = 0
    candidates: int = 0
    dropped_known_positive: int = 0
    dropped_margin: int = 0
    outside_rank_range: int = 0
    pairs_without_positive_score: int = 0
    pairs_with_too_few_negatives: int = 0
    pairs_without_negatives: int = 0  # dropped: nothing to train them against
    negatives: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def mine_negatives(queries: Queries, qrels: Qrels, searcher: Searcher, config: MiningConfig = MiningConfig(),
                   source: str = "searcher", score_fn: ScoreFn | None = None
                   ) -> tuple[list[MinedExample], MiningReport]:
    """Mine negatives for every judged (query, positive) pair; ``score_fn`` scores positives the search missed."""
    judged = {q: docs for q, docs in qrels.items() if q in queries and any(r > 0 for r in docs.values())}
    if not judged:
        raise DataError(None, None, "no query has a positive judgment among the given queries.",
                        "pass the qrels of the split you train on, with grades > 0 for positives.")
    run = searcher.search({q: queries[q] for q in judged}, config.depth)
    report = MiningReport(queries=len(judged))
    out: list[MinedExample] = []
    lo, hi = config.rank_range
    for qid in sorted(judged):
        hits = sorted(run.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        positives = {d for d, r in judged[qid].items() if r > 0}
        rng = np.random.default_rng([config.seed, zlib.crc32(qid.encode())])  # the same however queries are sharded
        for pid in sorted(positives):
            report.pairs += 1
            pos_score = run.get(qid, {}).get(pid)
            if pos_score is None and score_fn is not None:
                pos_score = float(score_fn(qid, [pid])[0])
            if pos_score is None and config.margin is not None:
                report.pairs_without_positive_score += 1
            kept: list[tuple[str, float]] = []
            for rank, (did, score) in enumerate(hits, start=1):
                report.candidates += 1
                if did in positives:
                    report.dropped_known_positive += 1
                elif pos_score is not None and config.margin is not None and _too_close(score, pos_score, config):
                    report.dropped_margin += 1
                elif not lo <= rank < hi:
                    report.outside_rank_range += 1
                else:
                    kept.append((did, score))
            if len(kept) < config.num_negatives:
                report.pairs_with_too_few_negatives += 1
            if not kept:
                report.pairs_without_negatives += 1
                continue
            pick = rng.choice(len(kept), size=min(config.num_negatives, len(kept)), replace=False)
            chosen = [kept[i] for i in sorted(pick)]
            report.negatives += len(chosen)
            out.append(MinedExample(qid, pid, tuple(d for d, _ in chosen), tuple(s for _, s in chosen),
                                    pos_score, source))
    return out, report


def mining_warnings(report: MiningReport, config: MiningConfig) -> list[str]:
    """What a user should hear about a mining run: the false-negative filter emptying pairs (on a single-topic
    corpus every candidate can sit close to the positive's score), or dropping most candidates."""
    out = []
    if report.pairs_without_negatives:
        out.append(f"{report.pairs_without_negatives} of {report.pairs} (query, positive) pairs have no negative left "
                   f"and are dropped ({report.dropped_margin} of {report.candidates} candidates fell within the "
                   f"{config.margin_mode} margin {config.margin}, {report.outside_rank_range} outside ranks "
                   f"{config.rank_range[0]}-{config.rank_range[1]}); lower --margin, use --margin-mode absolute, "
                   "or widen the rank range.")
    elif report.candidates and report.dropped_margin > report.candidates / 2:
        out.append(f"the {config.margin_mode} margin {config.margin} dropped {report.dropped_margin} of "
                   f"{report.candidates} candidates as likely false negatives; check that it suits this corpus.")
    return out


def _too_close(score: float, pos_score: float, config: MiningConfig) -> bool:
    if config.margin_mode == "relative":
        return score > config.margin * pos_score
    return score > pos_score - config.margin


def write_mined(examples: list[MinedExample], path: str | os.PathLike) -> None:
    """The mined table as Parquet: query id, positive id, negative ids and scores, positive score, source."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from retriever.atomic import atomic_path

    if not examples:
        raise DataError(str(path), None, "nothing was mined.", "check the qrels and the searcher's depth.")
    table = pa.table({
        "query_id": [e.query_id for e in examples],
        "positive_id": [e.positive_id for e in examples],
        "negative_ids": pa.array([list(e.negative_ids) for e in examples], pa.list_(pa.string())),
        "negative_scores": pa.array([list(e.negative_scores) for e in examples], pa.list_(pa.float32())),
        "positive_score": pa.array([e.positive_score for e in examples], pa.float32()),
        "source": [e.source for e in examples],
    })
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


_COLUMNS = ("query_id", "positive_id", "negative_ids", "negative_scores", "positive_score", "source")


def read_mined(path: str | os.PathLike) -> list[MinedExample]:
    """Read a mined-pairs Parquet file; a missing, empty or malformed one is a DataError naming the fix."""
    import pyarrow.parquet as pq

    from pathlib import Path

    if not Path(path).is_file():
        raise DataError(str(path), None, "pairs file not found.", "run `densepipe mine` first.")
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(str(path), None, f"not a readable Parquet file ({e}).", "rerun `densepipe mine`.") from e
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(str(path), None, f"missing columns {missing}.", "write it with `densepipe mine`.")
    if table.num_rows == 0:
        raise DataError(str(path), None, "the pairs file is empty.", "mine with qrels that have positives.")
    cols = table.to_pydict()
    return [MinedExample(q, p, tuple(n), tuple(s), ps, src) for q, p, n, s, ps, src in
            zip(*(cols[c] for c in _COLUMNS))]
