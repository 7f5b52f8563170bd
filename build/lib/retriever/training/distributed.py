"""Cross-worker batches: every worker encodes its slice of the global batch, then the embeddings of all workers
are gathered so that the loss sees the whole global batch as in-batch negatives (as one worker would), the local
part keeping its gradient (Tevatron's and sentence-transformers' gather).

Every worker knows the whole global batch (the batch order and the negatives are seeded), so slice sizes and the
global order are known everywhere and only the embeddings travel. With the loss over the global batch on every
worker and scaled by the world size, DistributedDataParallel's gradient average is exactly the one-worker
gradient: worker r's backward reaches only its own embeddings, and the contributions of all workers add up.
"""

from __future__ import annotations

from collections.abc import Sequence


def rank_slices(n: int, world_size: int) -> list[list[int]]:
    """The global batch positions of each worker (worker r: r, r + W, r + 2W, ...)."""
    return [list(range(r, n, world_size)) for r in range(world_size)]


def gather_rows(local, sizes: Sequence[int], rank: int, order: Sequence[int]):
    """All workers' rows in global order. ``local``: this worker's rows (with gradient); ``sizes``: each worker's
    row count; ``order``: for each row of the workers' concatenation (worker 0 first), its global position."""
    import torch
    import torch.distributed as dist

    width = max(sizes)
    padded = local
    if local.shape[0] < width:
        padded = torch.cat([local, local.new_zeros((width - local.shape[0], *local.shape[1:]))])
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.detach().contiguous())
    parts[rank] = padded  # the gathered copy has no gradient: keep this worker's own rows
    rows = torch.cat([p[:s] for p, s in zip(parts, sizes)])
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.as_tensor(list(order), dtype=torch.long)] = torch.arange(len(order))
    return rows[inverse.to(rows.device)]
