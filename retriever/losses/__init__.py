"""Contrastive losses, one per file, each an ``nn.Module`` built from its own frozen config and the options every
loss shares (``base.ContrastiveOptions``: a learned temperature, MoCHi's synthetic negatives, the queue's margin)."""

from retriever.losses.base import ContrastiveLoss, ContrastiveOptions, LossConfig, Temperature
from retriever.losses.cached import GradCache, GradCacheConfig
from retriever.losses.dcl import DecoupledConfig, DecoupledInfoNCE
from retriever.losses.debiased import DebiasedInfoNCE, DebiasedInfoNCEConfig
from retriever.losses.distill import DistillConfig, Distillation
from retriever.losses.graded import GradedConfig, GradedContrastive
from retriever.losses.infonce import InfoNCE, InfoNCEConfig
from retriever.losses.mochi import MixConfig, mix_hard_negatives
from retriever.losses.supcon import SupCon, SupConConfig

__all__ = ["ContrastiveLoss", "ContrastiveOptions", "LossConfig", "Temperature", "GradCache", "GradCacheConfig",
           "DecoupledConfig", "DecoupledInfoNCE", "DebiasedInfoNCE", "DebiasedInfoNCEConfig", "DistillConfig",
           "Distillation", "GradedConfig", "GradedContrastive", "InfoNCE", "InfoNCEConfig", "MixConfig",
           "mix_hard_negatives", "SupCon", "SupConConfig"]
