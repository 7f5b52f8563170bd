"""HyDE query expansion (Gao et al., 2022, "Precise Zero-Shot Dense Retrieval without Relevance Labels"):
generators (local causal LMs, GGUF included, or an OpenAI-compatible endpoint), task prompts, a Parquet cache
of generations, and the averaging of query and hypothetical-document embeddings."""

from retriever.hyde.cache import GenerationCache
from retriever.hyde.expand import ExpansionReport, expand_queries, generate_texts, hypothetical_documents
from retriever.hyde.generators import HFGenerator, OpenAICompatibleGenerator, load_generator
from retriever.hyde.prompts import PROMPTS, render_prompt

__all__ = ["ExpansionReport", "GenerationCache", "HFGenerator", "OpenAICompatibleGenerator", "PROMPTS",
           "expand_queries", "generate_texts", "hypothetical_documents", "load_generator", "render_prompt"]
