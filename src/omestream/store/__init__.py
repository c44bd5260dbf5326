"""Open existing OME-Zarr datasets and change them safely.

``open_store(path, mode)`` returns an :class:`Image`, a :class:`Plate` or a
:class:`Collection` (bioformats2raw root). Changes are validated before anything is
written, pixels are written before the metadata that exposes them, and every
metadata read-modify-write holds an inter-process lock (see :mod:`.lock`).
"""

from omestream.store.dataset import Collection, Dataset, open_store
from omestream.store.image import Image, Level
from omestream.store.lock import lock_dir
from omestream.store.plate import Plate, Well

__all__ = ["Collection", "Dataset", "Image", "Level", "Plate", "Well", "lock_dir", "open_store"]
