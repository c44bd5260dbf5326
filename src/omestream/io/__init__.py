"""Storage access: key/value stores and Zarr node documents."""

from omestream.io.kv import FsspecKV, KVStore, LocalKV, open_kv

__all__ = ["FsspecKV", "KVStore", "LocalKV", "open_kv"]
