"""Indexes on disk: ``index.faiss`` (plain ``faiss.read_index`` loads it), ``ids.json`` and ``index.json``.

Files are written under temporary names and renamed; the manifest is written last, so a folder with a
manifest holds a whole index, and the manifest says what it was built from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from retriever.atomic import atomic_path, read_json, write_json
from retriever.types import DataError

INDEX_FILE, IDS_FILE, MANIFEST_FILE = "index.faiss", "ids.json", "index.json"


def save_index(folder: str | os.PathLike, index, ids: list[str], manifest: dict) -> None:
    import faiss

    folder = Path(folder)
    if index.ntotal != len(ids):
        raise ValueError(f"index holds {index.ntotal} vectors but {len(ids)} ids were given")
    (folder / MANIFEST_FILE).unlink(missing_ok=True)  # the folder is unfinished until the manifest is back
    with atomic_path(folder / INDEX_FILE) as tmp:
        faiss.write_index(index, str(tmp))
    with atomic_path(folder / IDS_FILE) as tmp:
        tmp.write_text(json.dumps(ids))
    import faiss as _f

    write_json(folder / MANIFEST_FILE, {**manifest, "ntotal": int(index.ntotal), "faiss_version": _f.__version__,
                                        "index_bytes_on_disk": (folder / INDEX_FILE).stat().st_size})


def index_is_done(folder: str | os.PathLike, expect: dict) -> bool:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return False
    have = read_json(path)
    return all(have.get(k) == v for k, v in expect.items())


def load_index(folder: str | os.PathLike, mmap: bool = False):
    """Return (index, ids, manifest) of a saved index."""
    import faiss

    folder = Path(folder)
    if not (folder / MANIFEST_FILE).is_file():
        raise DataError(str(folder / MANIFEST_FILE), None, "no index manifest: the index is missing or unfinished.",
                        "build it with `densepipe index` (a rerun finishes an interrupted build).")
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
    index = faiss.read_index(str(folder / INDEX_FILE), flags)
    ids = json.loads((folder / IDS_FILE).read_text())
    return index, ids, read_json(folder / MANIFEST_FILE)
