"""Bi-encoders (sentence-transformers underneath) and model resolution (hub name -> local package)."""

from retriever.encoders.bi_encoder import BiEncoder, EncoderConfig, model_hash
from retriever.encoders.registry import PackagedModel, register, registered_models, resolve_model

__all__ = ["BiEncoder", "EncoderConfig", "PackagedModel", "model_hash", "register", "registered_models",
           "resolve_model"]
