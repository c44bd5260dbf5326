"""The optional packages this subpackage needs, with the install line that fixes them."""

from __future__ import annotations

from omestream.errors import BackendUnavailableError

__all__ = ["require_dask", "require_distributed"]

_FIX = 'pip install "omestream[dask]"'


def require_dask() -> None:
    try:
        import dask.array  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            f"omestream.dask needs dask[array], which is not installed ({exc}); run: {_FIX}"
        ) from None


def require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            f"running on a cluster needs dask.distributed, which is not installed ({exc}); "
            f"run: {_FIX}"
        ) from None
