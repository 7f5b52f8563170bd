"""Gradient cache for contrastive losses (Gao et al., RepL4NLP 2021, "Scaling Deep Contrastive Learning Batch
Size under Memory Limited Setup"): a large batch's loss needs every embedding at once, but not every activation.

1. embed the batch chunk by chunk without building a graph, remembering each chunk's RNG state (for dropout);
2. compute the loss on the detached embeddings and backpropagate it to them only;
3. re-embed each chunk with a graph under the same RNG state and backpropagate the cached embedding gradients.

Peak activation memory is one chunk's; the parameter gradients equal those of the full-batch loss (exactly
without dropout; with dropout, equal to a full-batch step that drew the same masks chunk by chunk)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import nn

from retriever.types import ConfigError

Encode = Callable[[Sequence[str]], torch.Tensor]
# a group of inputs to the loss: texts with the function that embeds them, or fixed (precomputed) vectors
Group = Union[tuple[Encode, Sequence[str]], torch.Tensor, None]


@dataclass(frozen=True)
class GradCacheConfig:
    chunk_size: int = 32

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ConfigError(f"gradient-cache chunk_size must be >= 1, got {self.chunk_size}.")


def _rng_state() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


class GradCache(nn.Module):
    """Wraps a contrastive loss ``loss(q, d_pos, d_neg, mask)``; ``step`` runs forward and backward and returns
    the detached loss. Call ``optimizer.step()`` after it as usual."""

    def __init__(self, loss: nn.Module, config: GradCacheConfig = GradCacheConfig()):
        super().__init__()
        self.loss = loss
        self.config = config

    def step(self, groups: Sequence[Group], mask: torch.Tensor | None = None, **loss_kwargs) -> torch.Tensor:
        """``loss_kwargs``: fixed inputs passed on to the loss as they are (a queue, its mask, grades)."""
        size = self.config.chunk_size
        cached: list[torch.Tensor | None] = []
        states: list[list[tuple]] = []
        for group in groups:
            if group is None or isinstance(group, torch.Tensor):
                cached.append(group)
                states.append([])
                continue
            encode, texts = group
            parts, chunk_states = [], []
            for start in range(0, len(texts), size):
                chunk_states.append(_rng_state())
                with torch.no_grad():
                    parts.append(encode(texts[start:start + size]))
            cached.append(torch.cat(parts).detach().requires_grad_(True) if parts else None)
            states.append(chunk_states)
        loss = self.loss(*cached, mask=mask, **loss_kwargs)
        loss.backward()
        after = _rng_state()
        for group, reps, chunk_states in zip(groups, cached, states):
            if not chunk_states or reps is None or reps.grad is None:
                continue
            encode, texts = group
            for i, start in enumerate(range(0, len(texts), size)):
                _set_rng_state(chunk_states[i])
                emb = encode(texts[start:start + size])
                emb.backward(reps.grad[start:start + size])
        _set_rng_state(after)
        return loss.detach()
