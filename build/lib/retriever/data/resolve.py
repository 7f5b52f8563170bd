"""Dataset resolution: a path, or a BEIR name under $DRP_DATA_DIR, downloaded from BEIR's archive when online."""

from __future__ import annotations

import os
import shutil
import urllib.request
import zipfile
from pathlib import Path

from retriever.atomic import atomic_path
from retriever.types import DataError

# The BEIR benchmark's public datasets (Thakur et al., 2021) and the archive it serves them from.
BEIR_DATASETS = frozenset({
    "msmarco", "trec-covid", "nfcorpus", "nq", "hotpotqa", "fiqa", "arguana", "webis-touche2020",
    "cqadupstack", "quora", "dbpedia-entity", "scidocs", "fever", "climate-fever", "scifact",
})
BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"


def user_dir(env_var: str, name: str) -> Path:
    """``$env_var`` when set, else ``$XDG_CACHE_HOME/densepipe/name`` (~/.cache/densepipe/name)."""
    env = os.environ.get(env_var)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "densepipe" / name


def data_dir() -> Path:
    """$DRP_DATA_DIR, or ~/.cache/densepipe/datasets."""
    return user_dir("DRP_DATA_DIR", "datasets")


def resolve_dataset(name_or_path: str, download: bool = True, timeout: float = 30.0) -> Path:
    """Return the folder of a dataset given as a path or as a BEIR name."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    if os.sep in name_or_path or name_or_path.startswith("."):
        raise DataError(name_or_path, None, "dataset folder not found.", "check the path.")
    root = data_dir()
    local = root / name_or_path
    if local.is_dir():
        return local
    if name_or_path not in BEIR_DATASETS:
        raise DataError(str(local), None, f"unknown dataset {name_or_path!r}: not a folder and not a BEIR name.",
                        f"pass a folder path, put the dataset under {root} (or set DRP_DATA_DIR), "
                        f"or use a BEIR name: {', '.join(sorted(BEIR_DATASETS))}.")
    if not download:
        raise DataError(str(local), None, f"dataset {name_or_path!r} is not present locally.",
                        f"download it into {root} or set DRP_DATA_DIR.")
    return _download_beir(name_or_path, root, timeout)


def _download_beir(name: str, root: Path, timeout: float) -> Path:
    url = BEIR_URL.format(name=name)
    root.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(root / f"{name}.zip") as tmp_zip:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp_zip, "wb") as out:
                shutil.copyfileobj(resp, out)
            with atomic_path(root / name) as tmp_dir:
                with zipfile.ZipFile(tmp_zip) as zf:
                    zf.extractall(tmp_dir)
                inner = tmp_dir / name  # BEIR zips hold one top-level folder named after the dataset
                if inner.is_dir():
                    for child in inner.iterdir():
                        child.rename(tmp_dir / child.name)
                    inner.rmdir()
    except OSError as e:
        raise DataError(str(root / name), None, f"dataset {name!r} is not present and could not be downloaded "
                        f"from {url} ({e}).",
                        f"on an offline machine, unzip {name}.zip into {root} or set DRP_DATA_DIR.") from e
    finally:
        (root / f"{name}.zip").unlink(missing_ok=True)
    return root / name
