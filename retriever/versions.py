"""Installed package versions, for provenance records."""

from __future__ import annotations


def package_versions(packages) -> dict[str, str | None]:
    """``{package: version}`` for each distribution name; None for one that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for package in packages:
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = None
    return out
