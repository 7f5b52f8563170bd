"""Objects for ``Isolated`` tests: built in the child process, they die the way native runtimes do."""

from __future__ import annotations

import importlib
import os
import signal


class Echo:
    def __init__(self, prefix: str):
        self.prefix = prefix

    def say(self, text: str) -> str:
        return self.prefix + text

    def fail(self) -> None:
        raise ValueError("a Python error travels back as itself")

    def pid(self) -> int:
        return os.getpid()


class JvmStarted:
    """Starts Pyserini's JVM the way the BM25 worker does."""

    def __init__(self):
        from retriever.sparse.java import prepare_pyserini

        prepare_pyserini()
        importlib.import_module("pyserini.search.lucene")  # starts the JVM with Pyserini's options

        import jnius

        self.system = jnius.autoclass("java.lang.System")

    def pid(self) -> int:
        assert self.system.getProperty("java.vm.version")  # the JVM answers
        return os.getpid()


class IllegalInstruction:
    """Dies as llama.cpp's AMX kernels do on a CPU that advertises AMX but cannot run it."""

    def __init__(self, *args):
        pass

    def generate(self, *args):
        os.kill(os.getpid(), signal.SIGILL)


class SegfaultOnInit:
    def __init__(self, *args):
        os.kill(os.getpid(), signal.SIGSEGV)
