"""``densepipe pretrain`` on a SciFact slice's corpus with a tiny model: each task saves a loadable
sentence-transformers folder; a killed span-prediction run resumes to the weights of an unbroken one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.pretrain import PretrainJob, run_pretraining
from retriever.pretraining import PretrainConfig
from tests.pipelines.test_train import ROOT, _weights


def _job(data, model, out, task="span", mlm_weight=0.0) -> PretrainJob:
    cfg = PretrainConfig(task=task, batch_size=4, lr=1e-3, max_seq_length=48, max_steps=4, checkpoint_every=2,
                         mlm_weight=mlm_weight)
    return PretrainJob(str(data), str(out), str(model), cfg, max_texts=16, engine="local")


@pytest.mark.parametrize("mlm_weight", [0.0, 1.0])
def test_killed_pretraining_resumes(scifact_slice, tiny_model, tmp_path, mlm_weight):
    """With the MLM term the fresh head is checkpointed and resumed too (else the resumed weights would differ)."""
    job = _job(scifact_slice, tiny_model, tmp_path / "killed", mlm_weight=mlm_weight)
    code = (f"from pipelines.pretrain import PretrainJob, run_pretraining\nfrom pipelines.runtime import RayEnv\n"
            f"from retriever.pretraining import PretrainConfig, SpanConfig, Granularity\n"
            f"job = {job!r}\nrun_pretraining(job, crash_at=3)\n")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (tmp_path / "killed" / "model").exists()
    resumed = run_pretraining(job)
    unbroken = run_pretraining(_job(scifact_slice, tiny_model, tmp_path / "unbroken", mlm_weight=mlm_weight))
    assert resumed["steps"] == unbroken["steps"] == 4 and resumed["labels_used"].startswith("none")
    a, b = _weights(tmp_path / "killed" / "model"), _weights(tmp_path / "unbroken" / "model")
    assert all(np.allclose(a[k], b[k], atol=1e-6) for k in a)
    base = _weights(tiny_model)  # and the four steps did move the weights (an untrained copy would also match)
    assert max(float(np.abs(a[k] - base[k]).max()) for k in base if k in a) > 1e-4
    assert run_pretraining(job)["skipped"]
    if mlm_weight:
        logged = json.loads((tmp_path / "killed" / "loss.json").read_text())["losses"]
        assert len(logged) == 4 and all(e["mlm"] > 0 and e["contrastive"] > 0 for e in logged)


@pytest.mark.parametrize("task", ["dropout", "ict"])
def test_other_tasks_save_a_loadable_model(scifact_slice, tiny_model, tmp_path, task):
    from sentence_transformers import SentenceTransformer

    info = run_pretraining(_job(scifact_slice, tiny_model, tmp_path / task, task))
    model = SentenceTransformer(info["model"], device="cpu")
    assert model.encode(["a claim"]).shape == (1, 32) and Path(tmp_path / task / "loss.png").is_file()
