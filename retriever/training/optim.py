"""AdamW without weight decay on biases and LayerNorm, with a linear warm-up then linear decay to zero."""

from __future__ import annotations


def make_optimizer(model, lr: float, weight_decay: float, total_steps: int, warmup: float, extra_params=(),
                   extra_lr: float | None = None):
    """``extra_params``: parameters outside the model (a learned temperature), without weight decay, at
    ``extra_lr`` (default: ``lr``) under the same schedule."""
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "bias" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    extra = [p for p in extra_params if p.requires_grad]
    if extra:
        groups.append({"params": extra, "weight_decay": 0.0, "lr": extra_lr or lr})
    opt = torch.optim.AdamW(groups, lr=lr)
    warm = max(1, int(total_steps * warmup))

    def schedule(step: int) -> float:
        return (step + 1) / warm if step < warm else max(0.0, (total_steps - step) / max(1, total_steps - warm))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def take_step(optimizer, scheduler, state, started: float, epoch: int, loss, **extra) -> dict:
    """Apply the gradients, advance the schedule and the step count, and log the step in ``state.losses``."""
    import time

    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.seconds = time.perf_counter() - started
    entry = {"step": state.step, "epoch": epoch + 1, "loss": round(float(loss.detach()), 6),
             "lr": float(scheduler.get_last_lr()[0]), **extra}
    state.losses.append(entry)
    return entry
