"""Contrastive losses, one per file, each an ``nn.Module`` built from its own frozen config."""

from retriever.losses.debiased import DebiasedInfoNCE, DebiasedInfoNCEConfig
from retriever.losses.infonce import InfoNCE, InfoNCEConfig

__all__ = ["DebiasedInfoNCE", "DebiasedInfoNCEConfig", "InfoNCE", "InfoNCEConfig"]
