"""``densepipe hyde`` end to end on a SciFact slice with a fake OpenAI-compatible server: expanded vectors,
run and metrics written; the rerun generates nothing."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.conftest import run_cli
from tests.retriever.test_hyde import _FakeOpenAI, fake_server  # noqa: F401 (the fixture)


def test_hyde_cli_with_a_served_generator(scifact_slice, tmp_path, capsys, fake_server):  # noqa: F811
    args = ["hyde", "--dataset", str(scifact_slice), "--generator", fake_server, "--endpoint-model", "smol",
            "--template", "scifact", "--n", "2", "--max-queries", "8", "--k", "100", "--output", str(tmp_path / "h")]
    first = run_cli(capsys, *args)
    assert first["report"]["generated"] == 16 and first["report"]["fallbacks"] == 0
    assert first["metrics"]["num_queries"] == 8 and 0 < first["metrics"]["ndcg@10"] <= 1
    table = pq.read_table(tmp_path / "h" / "query_vectors.parquet").to_pydict()
    assert len(table["query_id"]) == 8 and len(table["vector"][0]) == 384
    served = len(_FakeOpenAI.requests)
    again = run_cli(capsys, *args)
    assert again["report"]["generated"] == 0 and again["report"]["cached"] == 16
    assert len(_FakeOpenAI.requests) == served and again["metrics"] == first["metrics"]


@pytest.mark.ray
def test_hyde_generation_on_ray_actors(scifact_slice, tmp_path, capsys, fake_server):  # noqa: F811
    out = run_cli(capsys, "hyde", "--dataset", str(scifact_slice), "--generator", fake_server, "--endpoint-model",
                  "smol", "--n", "2", "--max-queries", "6", "--gen-batch-size", "2", "--engine", "ray",
                  "--num-workers", "2", "--k", "100", "--output", str(tmp_path / "h"))
    assert out["report"]["generated"] == 12 and out["report"]["failed_batches"] == 0
