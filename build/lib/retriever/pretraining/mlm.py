"""The masked-language-modelling term COSTA adds to contrastive span prediction: mask 15% of a document's
tokens (of those, 80% become [MASK], 10% a random token, 10% stay), predict the originals from the encoder's
token vectors. A sentence-transformers model carries no MLM head, so this one starts fresh (dense + GELU +
LayerNorm, the decoder tied to the input word embeddings, as in BERT) and is thrown away after pretraining."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLMHead(nn.Module):
    def __init__(self, word_embeddings: nn.Embedding):
        super().__init__()
        vocab, hidden = word_embeddings.weight.shape
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.bias = nn.Parameter(torch.zeros(vocab))
        self.word_embeddings = [word_embeddings]  # tied, not a submodule: its weight belongs to the encoder

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.norm(F.gelu(self.dense(hidden)))
        return F.linear(h, self.word_embeddings[0].weight, self.bias)


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: list[int], mask_id: int,
                vocab: int, probability: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input ids, labels): labels are -100 except where a token was picked for prediction."""
    candidates = attention_mask.bool() & ~torch.isin(input_ids, torch.as_tensor(special_ids))
    draw = torch.rand(input_ids.shape, generator=generator)
    picked = candidates & (draw < probability)
    labels = torch.where(picked, input_ids, torch.full_like(input_ids, -100))
    how = torch.rand(input_ids.shape, generator=generator)
    masked = input_ids.clone()
    masked[picked & (how < 0.8)] = mask_id
    swap = picked & (how >= 0.8) & (how < 0.9)
    masked[swap] = torch.randint(vocab, input_ids.shape, generator=generator)[swap]
    return masked, labels


class MaskedLM:
    """The MLM loss of a SentenceTransformer on a batch of texts (its first module must be a transformer with a
    tokenizer and word embeddings)."""

    def __init__(self, module, probability: float, seed: int = 0):
        transformer = module[0]
        self.module, self.probability = module, probability
        self.tokenizer = transformer.tokenizer
        if self.tokenizer.mask_token_id is None:
            from retriever.types import ConfigError

            raise ConfigError("the MLM term needs a tokenizer with a [MASK] token; this model has none. Fix: set "
                              "mlm_weight = 0.")
        embeddings = transformer.auto_model.get_input_embeddings()
        with torch.random.fork_rng(devices=[]):  # the fresh head's weights depend on the seed alone
            torch.manual_seed(seed)
            self.head = MLMHead(embeddings).to(embeddings.weight.device)
        self.apply_head = self.head  # what the loss calls: the head, or its DistributedDataParallel wrapper
        self.vocab = embeddings.weight.shape[0]

    def loss(self, model, texts: list[str], generator: torch.Generator) -> torch.Tensor:
        prepare = getattr(self.module, "preprocess", None) or self.module.tokenize
        features = prepare(list(texts))
        masked, labels = mask_tokens(features["input_ids"], features["attention_mask"],
                                     self.tokenizer.all_special_ids, self.tokenizer.mask_token_id, self.vocab,
                                     self.probability, generator)
        device = next(self.head.parameters()).device
        features = {k: v.to(device) if hasattr(v, "to") else v for k, v in {**features, "input_ids": masked}.items()}
        tokens = model(features)["token_embeddings"]
        labels = labels.to(device)
        picked = labels != -100
        if not picked.any():
            return tokens.sum() * 0.0
        return F.cross_entropy(self.apply_head(tokens[picked]), labels[picked])
