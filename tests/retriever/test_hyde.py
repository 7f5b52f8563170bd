"""HyDE: the generation cache, exact averaging, an OpenAI-compatible endpoint against a local fake server,
and the fallback to the plain query when generation fails or comes back empty."""

from __future__ import annotations

import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from retriever.hyde import ExpansionReport, GenerationCache, expand_queries, hypothetical_documents, render_prompt
from retriever.hyde.generators import GenerationError, OpenAICompatibleGenerator
from retriever.types import ConfigError


class FakeGenerator:
    name = "fake"

    def __init__(self, fail_on: str = "", empty_on: str = ""):
        self.calls, self.prompts = 0, 0
        self.fail_on, self.empty_on = fail_on, empty_on

    def settings(self) -> dict:
        return {"max_new_tokens": 8}

    def generate(self, prompts, n, temperature, seed):
        self.calls += 1
        self.prompts += len(prompts)
        if self.fail_on and any(self.fail_on in p for p in prompts):
            raise GenerationError("server said no")
        return [["" if self.empty_on and self.empty_on in p else f"doc {i} about {p[-12:]}" for i in range(n)]
                for p in prompts]


class ToyEncoder:
    dim = 4

    @staticmethod
    def _vec(text: str) -> np.ndarray:
        return np.random.default_rng(zlib.crc32(text.encode())).normal(size=4).astype(np.float32)

    def encode_queries(self, texts):
        return np.stack([self._vec("q:" + t) for t in texts])

    def encode_documents(self, docs):
        return np.stack([self._vec("d:" + d.text) for d in docs])


QUERIES = {"1": "does vitamin d prevent fractures", "2": "is aspirin good for the heart", "3": "malaria vaccine"}


def test_cache_hits_on_rerun_and_smaller_n_reuses_samples(tmp_path):
    gen = FakeGenerator()
    first = hypothetical_documents(QUERIES, gen, "scifact", 4, 0.7, 0, GenerationCache(tmp_path), ExpansionReport())
    assert gen.prompts == 3 and all(len(v) == 4 for v in first.values())
    report = ExpansionReport()
    again = hypothetical_documents(QUERIES, gen, "scifact", 4, 0.7, 0, GenerationCache(tmp_path), report)
    assert gen.calls == 1 and again == first and report.generated == 0 and report.cached == 12
    fewer = hypothetical_documents(QUERIES, gen, "scifact", 2, 0.7, 0, GenerationCache(tmp_path), ExpansionReport())
    assert gen.calls == 1 and all(fewer[q] == first[q][:2] for q in QUERIES)
    hypothetical_documents(QUERIES, gen, "scifact", 4, 0.9, 0, GenerationCache(tmp_path), ExpansionReport())
    assert gen.calls == 2  # other sampling settings are other generations


def test_expanded_vector_is_the_exact_mean(tmp_path):
    enc = ToyEncoder()
    docs = {"1": ["a", "b"], "2": ["c"], "3": []}
    report = ExpansionReport()
    qids, xq = expand_queries(QUERIES, docs, enc, include_query=True, report=report)
    q1 = enc.encode_queries([QUERIES["1"]])[0]
    a, b = enc._vec("d:a"), enc._vec("d:b")
    assert qids == ["1", "2", "3"]
    np.testing.assert_allclose(xq[0], (q1 + a + b) / 3, rtol=1e-6)
    np.testing.assert_allclose(xq[2], enc.encode_queries([QUERIES["3"]])[0], rtol=1e-6)  # nothing to average
    assert report.fallback_queries == ["3"]
    _, docs_only = expand_queries(QUERIES, docs, enc, include_query=False)
    np.testing.assert_allclose(docs_only[0], (a + b) / 2, rtol=1e-6)


def test_failed_and_empty_generations_fall_back_with_a_count(tmp_path):
    gen = FakeGenerator(fail_on="aspirin", empty_on="malaria")
    report = ExpansionReport()
    docs = hypothetical_documents(QUERIES, gen, "web", 2, 0.7, 0, GenerationCache(tmp_path), report, batch_size=1)
    assert docs["2"] == [] and docs["3"] == [] and len(docs["1"]) == 2
    assert report.failed_batches == 1 and report.empty == 2
    qids, xq = expand_queries(QUERIES, docs, ToyEncoder(), report=report)
    assert sorted(report.fallback_queries) == ["2", "3"] and report.to_dict()["fallbacks"] == 2
    np.testing.assert_allclose(xq[1], ToyEncoder().encode_queries([QUERIES["2"]])[0])


class _FakeOpenAI(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeOpenAI.requests.append((self.path, body))
        if body.get("model") == "broken":
            self.send_response(500)
            self.end_headers()
            return
        if body.get("model") == "echo":  # a query for a document prompt: its first words, or a useless heading
            doc = body["messages"][0]["content"].split("Passage: ")[-1].split("\n")[0]
            content = ("Here is the question:" if "cohort 3" in doc else 'A: "What is the answer?"'
                       if "cohort 2" in doc else f"Question: {' '.join(doc.split()[:5])}?")
            choices = [{"index": 0, "message": {"role": "assistant", "content": content}}]
        elif self.path.endswith("/chat/completions"):  # answers one choice per request, like llama.cpp's server
            choices = [{"index": 0, "message": {"role": "assistant", "content": f" passage {body['seed']} "}}]
        else:
            choices = [{"index": i, "text": f"completion {i}"} for i in range(body["n"])]
        data = json.dumps({"choices": choices}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def fake_server():
    server = HTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeOpenAI.requests.clear()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_openai_compatible_endpoint(fake_server):
    chat = OpenAICompatibleGenerator(fake_server, "smol", chat=True, max_new_tokens=32)
    assert chat.generate(["claim one"], 3, 0.7, 5) == [["passage 5", "passage 6", "passage 7"]]
    path, body = _FakeOpenAI.requests[0]
    assert path == "/v1/chat/completions" and body["messages"][0]["content"] == "claim one"
    assert body["max_tokens"] == 32 and body["temperature"] == 0.7 and body["n"] == 3
    plain = OpenAICompatibleGenerator(fake_server + "/v1", "base", chat=False)
    assert plain.generate(["p"], 2, 0.7, 0) == [["completion 0", "completion 1"]]
    assert _FakeOpenAI.requests[-1][0] == "/v1/completions"
    with pytest.raises(GenerationError, match="500"):
        OpenAICompatibleGenerator(fake_server, "broken").generate(["x"], 1, 0.7, 0)


def test_prompts_by_name_or_template():
    assert "Claim: aspirin" in render_prompt("scifact", "aspirin")
    assert render_prompt("Q={query}!", "x") == "Q=x!"
    with pytest.raises(ConfigError, match="unknown prompt"):
        render_prompt("poetry", "x")
