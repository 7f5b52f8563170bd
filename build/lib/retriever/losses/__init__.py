"""Contrastive losses, one per file, each an ``nn.Module`` built from its own frozen config."""

from retriever.losses.cached import GradCache, GradCacheConfig
from retriever.losses.debiased import DebiasedInfoNCE, DebiasedInfoNCEConfig
from retriever.losses.infonce import InfoNCE, InfoNCEConfig

__all__ = ["GradCache", "GradCacheConfig", "DebiasedInfoNCE", "DebiasedInfoNCEConfig", "InfoNCE", "InfoNCEConfig"]
