"""Training checkpoints: one file holding the model, optimizer and scheduler states, the step reached and the
logs so far, written under a temporary name and renamed, so a killed run leaves the previous checkpoint whole."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from retriever.atomic import atomic_path
from retriever.types import ConfigError

CHECKPOINT = "checkpoint.pt"
log = logging.getLogger("densepipe.train")


@dataclass
class TrainState:
    step: int = 0
    losses: list[dict] = field(default_factory=list)  # {"step", "epoch", "loss", "lr", ...}
    evals: list[dict] = field(default_factory=list)  # {"step", "epoch", <metrics>}
    seconds: float = 0.0


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


def resume(folder: str | os.PathLike, fingerprint: str, module, optimizer, scheduler,
           extras: dict | None = None) -> TrainState:
    """Load the checkpoint into the model, optimizer, scheduler and ``extras`` (name -> anything with
    ``load_state_dict``: a learned temperature, a negative queue, a momentum encoder); a fresh TrainState when
    there is none."""
    ckpt = load_checkpoint(folder, fingerprint)
    if ckpt is None:
        return TrainState()
    module.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    saved = ckpt.get("extras", {})  # checkpoints written before extras existed hold none (and need none)
    for name, obj in (extras or {}).items():
        if name in saved:
            obj.load_state_dict(saved[name])
    state = TrainState(**ckpt["state"])
    log.info("resuming at step %d from %s", state.step, folder)
    return state


def checkpoint(folder: str | os.PathLike, fingerprint: str, module, optimizer, scheduler, state: TrainState,
               extras: dict | None = None) -> None:
    save_checkpoint(folder, {"fingerprint": fingerprint, "model": module.state_dict(),
                             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             "state": asdict(state),
                             "extras": {name: obj.state_dict() for name, obj in (extras or {}).items()}})
