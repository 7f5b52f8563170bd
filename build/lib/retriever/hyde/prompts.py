"""Task prompts for hypothetical documents, one per kind of collection, chosen by name (the HyDE paper
writes one instruction per task; these are ours, in the same spirit). ``{query}`` is replaced by the query."""

from __future__ import annotations

from retriever.types import ConfigError

PROMPTS = {
    "web": "Write a short passage that answers the question.\nQuestion: {query}\nPassage:",
    "scifact": "Write a short passage from a scientific paper's abstract that supports or refutes the claim.\n"
               "Claim: {query}\nPassage:",
    "fiqa": "Write a short financial article passage that answers the question.\nQuestion: {query}\nPassage:",
    "arguana": "Write a short counter-argument to the following argument.\nArgument: {query}\nCounter-argument:",
    "news": "Write a short news article about the following topic.\nTopic: {query}\nArticle:",
    "trec-covid": "Write a short passage from a scientific paper that answers the question about COVID-19.\n"
                  "Question: {query}\nPassage:",
}


def render_prompt(template: str, query: str) -> str:
    """``template``: a name in PROMPTS, or a literal template containing ``{query}``."""
    text = PROMPTS.get(template, template)
    if "{query}" not in text:
        raise ConfigError(f"unknown prompt {template!r}: use one of {sorted(PROMPTS)} or a template with {{query}}.")
    return text.replace("{query}", query)
