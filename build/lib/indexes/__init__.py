"""FAISS and nothing else: index specs, memory estimates and budgets, building, sharded search, manifests."""

from indexes.build import BuildInfo, apply_search_params, build_index, gpu_available
from indexes.sharded import ShardedIndex, merge_topk
from indexes.spec import (PRESETS, IndexSpec, MemoryBudgetError, MemoryEstimate, check_budget, estimate_memory,
                          fmt_bytes, parse_bytes)
from indexes.store import index_is_done, load_index, save_index

__all__ = ["PRESETS", "BuildInfo", "IndexSpec", "MemoryBudgetError", "MemoryEstimate", "ShardedIndex",
           "apply_search_params", "build_index", "check_budget", "estimate_memory", "fmt_bytes", "gpu_available",
           "index_is_done", "load_index", "merge_topk", "parse_bytes", "save_index"]
