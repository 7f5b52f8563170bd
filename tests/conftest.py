from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DRP_DATA_DIR", ROOT.parent / "shared" / "datasets"))
SCIFACT = DATA / "scifact"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_sessionstart(session):
    # exported ONNX graphs: shared by the session's tests and the Ray workers they start (set before any cluster
    # exists, so its processes inherit it), never written to the user's ~/.cache
    os.environ["DRP_EXPORT_CACHE"] = str(session.config._tmp_path_factory.getbasetemp() / "exports")


def need_data(path: Path) -> None:
    """Skip a test whose data is missing here; in CI (CI=true) a missing data folder is a failure, not a skip."""
    if path.exists():
        return
    message = f"{path} not found (set DRP_DATA_DIR)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def screenshot(html: Path, png: Path, size: str = "1280,2400") -> Path:
    """Render a page in headless Chromium (Debian's package; .ci/run installs it) and save a PNG of it. Outside
    CI a machine without Chromium skips the test; in CI its absence is a failure."""
    import shutil
    import subprocess

    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if exe is None:
        message = "headless Chromium not found (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={png.parent / '.chromium'}", f"--screenshot={png}", f"--window-size={size}",
                    "--virtual-time-budget=5000", html.resolve().as_uri()],
                   check=True, capture_output=True, timeout=180)
    artifacts = os.environ.get("DRP_TEST_ARTIFACTS")
    if artifacts:  # kept for a person to look at
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(png, Path(artifacts) / png.name)
    return png


@pytest.fixture(autouse=True)
def _work_dir(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DRP_WORK_DIR", str(tmp_path_factory.mktemp("work")))
    monkeypatch.setenv("DRP_DATA_POLICY", "accept")  # the default policy, whatever an earlier test set


def run_cli(capsys, *args) -> dict:
    """Run ``densepipe ARGS`` in-process; it must succeed and print one JSON object."""
    from pipelines.cli import main

    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def write_beir(folder: Path, corpus: list[dict], queries: list[dict], qrels: list[tuple[str, str, int]],
               split: str = "test") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / f"{split}.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels))
    return folder


@pytest.fixture(scope="session")
def scifact_slice(tmp_path_factory) -> Path:
    """A real BEIR folder: the SciFact documents judged for the first 40 test queries plus 230 others (enough
    for an 8-bit PQ, whose 256 centroids need as many training vectors)."""
    need_data(SCIFACT)
    from retriever.data import load_beir

    ds = load_beir(SCIFACT, "test")
    qids = sorted(ds.qrels, key=int)[:40]
    judged = {d for q in qids for d in ds.qrels[q]}
    others = [d for d in ds.corpus if d not in judged][:230]
    keep = [d for d in ds.corpus if d in judged or d in set(others)]
    corpus = [{"_id": d, "title": ds.corpus[d].title, "text": ds.corpus[d].text} for d in keep]
    queries = [{"_id": q, "text": ds.queries[q]} for q in qids]
    qrels = [(q, d, r) for q in qids for d, r in ds.qrels[q].items()]
    return write_beir(tmp_path_factory.mktemp("data") / "scifact-slice", corpus, queries, qrels)


def build_tiny_model(folder: Path, dim: int = 32, seed: int = 0, dropout: float = 0.1) -> Path:
    """A 2-layer, 32-dim BERT with MiniLM's tokenizer, saved as a sentence-transformers folder (mean pooling,
    normalized): trains in milliseconds, deterministic."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    from retriever.encoders import resolve_model

    torch.manual_seed(seed)
    raw = folder / "hf"
    tok = AutoTokenizer.from_pretrained(resolve_model("sentence-transformers/all-MiniLM-L6-v2"))
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=dim, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=2 * dim, max_position_embeddings=128, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout)).save_pretrained(raw)
    tok.save_pretrained(raw)
    model = SentenceTransformer(modules=[Transformer(str(raw), max_seq_length=64), Pooling(dim, "mean"),
                                         Normalize()], device="cpu", similarity_fn_name="cosine")
    model.save(str(folder / "st"))
    return folder / "st"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def toy_beir(tmp_path_factory) -> Path:
    """40 documents on 10 topics, 20 queries (2 per topic) judging their topic's first document; train split."""
    topics = ["protein folding", "cancer immunotherapy", "vitamin d", "malaria vaccine", "gut microbiome",
              "insulin resistance", "stem cells", "antibiotic resistance", "sleep apnea", "air pollution"]
    corpus, queries, qrels = [], [], []
    for t, topic in enumerate(topics):
        for j in range(4):
            corpus.append({"_id": f"d{t}-{j}", "title": topic, "text": f"study {j} of {topic} in patients cohort {j}"})
        for j in range(2):
            queries.append({"_id": f"q{t}-{j}", "text": f"what is known about {topic} {'risk' if j else 'effects'}"})
            qrels.append((f"q{t}-{j}", f"d{t}-0", 1))
    return write_beir(tmp_path_factory.mktemp("data") / "toy", corpus, queries, qrels, split="train")
