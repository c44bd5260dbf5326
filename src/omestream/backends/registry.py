"""Engines by name, imported only when used."""

from __future__ import annotations

import importlib

from omestream.backends.base import ArrayBackend
from omestream.errors import BackendUnavailableError
from omestream.settings.formats import ENGINES, engine_available

__all__ = ["available_engines", "load_engine"]

# name -> "module:Class"; the module imports the engine's own library.
_IMPLEMENTATIONS: dict[str, str] = {
    "omestream": "omestream.backends.native:NativeZarrBackend",
    "zarr-python": "omestream.backends.zarr_python:ZarrPythonBackend",
    "tensorstore": "omestream.backends.tensorstore:TensorstoreBackend",
    "acquire-zarr": "omestream.backends.acquire:AcquireZarrBackend",
    "tifffile": "omestream.backends.tiff:TiffBackend",
}


def available_engines() -> dict[str, bool]:
    """Every known engine and whether it can be used on this machine."""
    return {name: name in _IMPLEMENTATIONS and engine_available(name) for name in ENGINES}


def load_engine(name: str) -> type[ArrayBackend]:
    info = ENGINES.get(name)
    if info is None or name not in _IMPLEMENTATIONS:
        raise BackendUnavailableError(f"unknown engine {name!r}: known are {', '.join(ENGINES)}")
    if not engine_available(name):
        fix = f'pip install "omestream[{info.extra}]"' if info.extra else "pip install omestream"
        raise BackendUnavailableError(
            f"engine {name!r} needs the package {info.module!r}, which is not installed; "
            f"run: {fix}"
        )
    module_name, cls_name = _IMPLEMENTATIONS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(f"engine {name!r} failed to import: {exc}") from exc
    cls: type[ArrayBackend] = getattr(module, cls_name)
    return cls
