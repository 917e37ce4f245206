"""The public surface: one sorted __all__, everything public exported, nothing private."""

from __future__ import annotations

import importlib
import pkgutil

import genie_async
from genie_async import admin, errors, events, olbrain, sse

PUBLIC_MODULES = {"errors", "events", "sse", "testing"}


def _isort_key(name: str) -> tuple[int, str]:
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions and other names.
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


def test_all_is_sorted_and_unique() -> None:
    """__all__ of the package and of each public module is sorted with no duplicates."""
    for module in (genie_async, admin, errors, events, olbrain, sse):
        names = list(module.__all__)
        assert names == sorted(names, key=_isort_key), module.__name__
        assert len(names) == len(set(names)), module.__name__


def test_every_name_in_all_exists() -> None:
    """Every exported name resolves."""
    for module in (genie_async, admin, errors, events, olbrain, sse):
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_public_modules_are_the_only_unprefixed_ones() -> None:
    """Only the deliberately public namespaces lack the underscore prefix."""
    names = {m.name for m in pkgutil.iter_modules(genie_async.__path__)}
    public = {n for n in names if not n.startswith("_")}
    assert public <= PUBLIC_MODULES | {"admin", "olbrain"}, public


def test_public_classes_of_private_modules_are_exported() -> None:
    """Every public class defined in a private module is re-exported from the package."""
    exported = set(genie_async.__all__)
    for info in pkgutil.iter_modules(genie_async.__path__):
        if not info.name.startswith("_") or info.name in {"__main__", "_cli"}:
            continue
        module = importlib.import_module(f"genie_async.{info.name}")
        for name in getattr(module, "__all__", ()):
            assert name in exported, f"genie_async.{info.name}.{name} is not exported"


def test_events_and_errors_are_reexported_at_the_top() -> None:
    """Every public event class and every error is importable from genie_async."""
    for module in (errors, events):
        for name in module.__all__:
            if name in {
                "decode_event",
                "event_from_object",
                "KEEPALIVE_TYPE",
                "Ping",
                "StreamInterrupted",
            }:
                continue  # helpers and control frames stay in their namespace
            assert getattr(genie_async, name) is getattr(module, name), name


def test_reprs_show_the_public_path() -> None:
    """Classes from private modules present themselves as genie_async.X."""
    assert genie_async.GenieClient.__module__ == "genie_async"
    assert genie_async.EventStream.__module__ == "genie_async"
    assert olbrain.OlbrainClient.__module__ == "genie_async.olbrain"


def test_py_typed_is_shipped() -> None:
    """The package declares its inline types (PEP 561)."""
    assert importlib.resources.files("genie_async").joinpath("py.typed").is_file()
