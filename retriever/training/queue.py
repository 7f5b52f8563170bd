"""A momentum queue of negatives (MoCo: He et al., CVPR 2020, "Momentum Contrast for Unsupervised Visual
Representation Learning"): the documents of the last ``size`` training examples, as a slowly changing document
encoder embedded them, serve as extra negatives for every query, so a small batch on a CPU still sees thousands.

- With ``tower="query"`` the document encoder is frozen (the base model's vectors): the queue holds those fixed
  vectors, and there is nothing to update.
- With ``tower="both"`` a momentum copy of the model, updated as theta_k <- m * theta_k + (1 - m) * theta_q after
  each step, embeds the batch's documents before they enter the queue (no gradient).

False negatives: a queue entry that is a judged positive of a query is dropped for that query (``mask_for``); the
loss can also drop entries scoring above a margin of the query's own positive (``ContrastiveOptions``). Both the
queue and the momentum weights go into the training checkpoint, so a resumed run continues with the same queue."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch

from retriever.types import ConfigError


class NegativeQueue:
    def __init__(self, size: int, dim: int):
        if size < 1:
            raise ConfigError(f"queue size must be >= 1, got {size}.")
        self.size, self.dim = size, dim
        self.vectors = torch.zeros(0, dim)
        self.ids: list[str] = []

    def __len__(self) -> int:
        return len(self.ids)

    def push(self, ids: Sequence[str], vectors: torch.Tensor) -> None:
        """Enqueue (oldest entries leave first once full); the newest ``size`` entries are kept."""
        self.vectors = torch.cat([self.vectors, vectors.detach().to("cpu", torch.float32)])[-self.size:]
        self.ids = (self.ids + list(ids))[-self.size:]

    def tensor(self, device=None) -> torch.Tensor:
        return self.vectors.to(device) if device is not None else self.vectors

    def mask_for(self, query_ids: Sequence[str], positives: Mapping[str, object]) -> torch.Tensor:
        """(B, K) True where queue entry k is a judged positive of row b's query."""
        return torch.tensor([[d in positives.get(q, ()) for d in self.ids] for q in query_ids],
                            dtype=torch.bool).reshape(len(query_ids), len(self.ids))

    def state_dict(self) -> dict:
        return {"vectors": self.vectors.clone(), "ids": list(self.ids), "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        self.vectors, self.ids = state["vectors"], list(state["ids"])


class MomentumEncoder:
    """An exponential moving average of a model's weights (the key encoder of MoCo)."""

    def __init__(self, model, momentum: float):
        if not 0 <= momentum < 1:
            raise ConfigError(f"queue momentum must be in [0, 1), got {momentum}.")
        self.momentum = momentum
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model) -> None:
        for k, q in zip(self.model.parameters(), model.parameters()):
            k.mul_(self.momentum).add_(q.detach(), alpha=1 - self.momentum)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
