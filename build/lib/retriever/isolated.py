"""Native runtimes in their own process: an object built and called in a fresh Python child.

The JVM behind Pyserini must own SIGSEGV (it uses the signal for implicit null checks in compiled code), and Ray
installs fatal-signal handlers of its own: a JVM started in a process where Ray starts later dies at the JIT's next
internal fault. llama.cpp can die with SIGILL on CPUs whose advertised instructions it cannot run. Either would kill
the driver. ``Isolated`` constructs ``factory(*args, **kwargs)`` in a child started with ``python -m`` (no fork, so
no inherited handlers or threads), forwards method calls over a private pipe (pickled), and turns the child's death
into a ``WorkerCrashed`` error that names the signal: one stage's error, not the death of the caller.

The child's stdout goes to the parent's stderr, so whatever the native library prints never reaches the JSON that
densepipe's commands print on stdout.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import weakref
from pathlib import Path

from retriever.types import DensepipeError

_ROOT = str(Path(__file__).resolve().parents[1])


class WorkerCrashed(DensepipeError):
    """The child process died (a signal or an exit) while it built the object or ran a call."""


def _describe(returncode: int | None) -> str:
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Isolated:
    """``factory`` is ``"module:attribute"``; ``what`` names the work in error messages ("BM25 search")."""

    def __init__(self, factory: str, *args, what: str, hint: str = "", **kwargs):
        self.what, self.hint = what, hint
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "retriever.isolated", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=2, env=env)  # fd 2: the real stderr
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = os.fdopen(to_child_w, "wb")
        self._recv = os.fdopen(from_child_r, "rb")
        self._finalizer = weakref.finalize(self, _shutdown, self._proc, self._send, self._recv)
        self._request(("init", factory, args, kwargs))

    def call(self, method: str, *args, **kwargs):
        return self._request(("call", method, args, kwargs))

    def _request(self, message: tuple):
        if self._proc.poll() is not None:
            raise self._crashed()
        try:
            pickle.dump(message, self._send, protocol=pickle.HIGHEST_PROTOCOL)
            self._send.flush()
            status, value = pickle.load(self._recv)
        except (EOFError, BrokenPipeError, pickle.UnpicklingError):
            raise self._crashed() from None
        if status == "error":
            raise value
        return value

    def _crashed(self) -> WorkerCrashed:
        try:
            code = self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = None
        self._finalizer()
        hint = f" {self.hint}" if self.hint else ""
        return WorkerCrashed(f"{self.what}: its worker process {_describe(code)}.{hint}")

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> "Isolated":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _shutdown(proc: subprocess.Popen, send, recv) -> None:
    for f in (send, recv):
        try:
            f.close()  # EOF on the child's side: it returns from its loop and exits
        except OSError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _serve(read_fd: int, write_fd: int) -> None:
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it then closes the pipe
    recv, send = os.fdopen(read_fd, "rb"), os.fdopen(write_fd, "wb")
    obj = None
    while True:
        try:
            kind, name, args, kwargs = pickle.load(recv)
        except EOFError:
            return
        try:
            if kind == "init":
                module, attr = name.split(":")
                obj = getattr(importlib.import_module(module), attr)(*args, **kwargs)
                reply = ("ok", None)
            else:
                reply = ("ok", getattr(obj, name)(*args, **kwargs))
        except BaseException as e:  # the caller re-raises it; an unpicklable one travels as its text
            try:
                pickle.dumps(e)
                reply = ("error", e)
            except Exception:
                reply = ("error", DensepipeError(f"{type(e).__name__}: {e}"))
        pickle.dump(reply, send, protocol=pickle.HIGHEST_PROTOCOL)
        send.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
