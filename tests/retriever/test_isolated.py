"""Native runtimes in a child process: calls go through, Python errors come back as themselves, and a child's
death by signal is a WorkerCrashed error that names the signal while the caller lives on."""

from __future__ import annotations

import os
import signal

import pytest

from retriever.hyde.generators import LlamaCppGenerator
from retriever.isolated import Isolated, WorkerCrashed


def test_calls_run_in_another_process_and_errors_travel_back():
    with Isolated("tests.retriever.crashing_workers:Echo", "> ", what="echo") as worker:
        assert worker.call("say", "hi") == "> hi"
        assert worker.call("pid") != os.getpid()
        with pytest.raises(ValueError, match="travels back"):
            worker.call("fail")
        assert worker.call("say", "still alive") == "> still alive"


def test_sigill_in_the_generator_is_a_stage_error_not_the_death_of_the_caller(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    gen = LlamaCppGenerator(gguf, chat=True, worker="tests.retriever.crashing_workers:IllegalInstruction")
    with pytest.raises(WorkerCrashed, match=r"llama.cpp generation: its worker process was killed by SIGILL.*"
                                            r"make setup-llama"):
        gen.generate(["a prompt"], n=1, temperature=0.7, seed=0)
    with pytest.raises(WorkerCrashed):  # a dead worker stays dead, and says so again
        gen.generate(["a prompt"], n=1, temperature=0.7, seed=0)


def test_a_terminated_jvm_worker_dies_by_the_signal_not_through_the_jvms_exit(tmp_path, monkeypatch):
    """Without -Xrs the JVM's SIGTERM handler exits (status 143) from a Java thread while Python runs on the main
    one, which can crash Python's garbage collector on the way out (an hs_err file)."""
    pytest.importorskip("pyserini")
    monkeypatch.chdir(tmp_path)  # where an hs_err file would be written
    worker = Isolated("tests.retriever.crashing_workers:JvmStarted", what="BM25 search")
    os.kill(worker.call("pid"), signal.SIGTERM)
    with pytest.raises(WorkerCrashed, match="BM25 search: its worker process was killed by SIGTERM"):
        worker.call("pid")
    assert not list(tmp_path.glob("hs_err*"))


def test_a_crash_while_building_the_object_is_reported():
    with pytest.raises(WorkerCrashed, match="BM25 search: its worker process was killed by SIGSEGV"):
        Isolated("tests.retriever.crashing_workers:SegfaultOnInit", what="BM25 search")
