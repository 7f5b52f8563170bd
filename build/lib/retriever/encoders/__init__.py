"""Bi-encoders (sentence-transformers underneath) and model resolution (hub name -> local package)."""

from retriever.encoders.bi_encoder import TRAINING_INFO, BiEncoder, EncoderConfig, document_encoder, \
    document_model_hash, model_hash
from retriever.encoders.registry import PackagedModel, register, registered_models, resolve_model

__all__ = ["TRAINING_INFO", "BiEncoder", "EncoderConfig", "PackagedModel", "document_encoder", "document_model_hash",
           "model_hash", "register", "registered_models", "resolve_model"]
