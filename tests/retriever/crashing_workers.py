"""Objects for ``Isolated`` tests: built in the child process, they die the way native runtimes do."""

from __future__ import annotations

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


class IllegalInstruction:
    """Dies as llama.cpp's AMX kernels do on a CPU that advertises AMX but cannot run it."""

    def __init__(self, *args):
        pass

    def generate(self, *args):
        os.kill(os.getpid(), signal.SIGILL)


class SegfaultOnInit:
    def __init__(self, *args):
        os.kill(os.getpid(), signal.SIGSEGV)
