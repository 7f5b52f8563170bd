"""Training checkpoints: one file holding the model, optimizer and scheduler states, the step reached and the
logs so far, written under a temporary name and renamed, so a killed run leaves the previous checkpoint whole."""

from __future__ import annotations

import os
from pathlib import Path

from retriever.atomic import atomic_path
from retriever.types import ConfigError

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(folder: str | os.PathLike, state: dict) -> Path:
    import torch

    path = Path(folder) / CHECKPOINT
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(folder: str | os.PathLike, fingerprint: str) -> dict | None:
    """The checkpoint in ``folder`` if there is one; one made for another config or data is a ConfigError."""
    import torch

    path = Path(folder) / CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        raise ConfigError(f"{path} was written by a training run with another config or data "
                          f"({state.get('fingerprint')} != {fingerprint}). Fix: pick another output folder, "
                          "or delete the checkpoint to start over.")
    return state
