"""Scale out with Dask: parallel writes, per-position processing and lazy reads.

Needs the ``dask`` extra (``pip install "omestream[dask]"``); ``import omestream`` does
not import this package or Dask.

* :func:`write_image`, :func:`write_positions`, :func:`write_plate`: write Dask
  arrays; the client creates structure and metadata, tasks write whole chunks/shards.
* :func:`process_positions`: map a function over every position or well of a dataset.
* :func:`to_dask`: lazy arrays of every image and level, one block per stored unit.

Every location may be a local path or an fsspec URL (``s3://bucket/data.ome.zarr``),
with ``storage_options`` or the usual environment variables for credentials.
"""

from omestream.dask._deps import require_dask

require_dask()

from omestream.dask.layout import ArrayRef, Dataset, ImageRef, read_dataset  # noqa: E402
from omestream.dask.process import (  # noqa: E402
    PositionJob,
    ProcessSummary,
    process_positions,
    settings_like,
)
from omestream.dask.read import array_to_dask, to_dask  # noqa: E402
from omestream.dask.write import (  # noqa: E402
    UnitWrite,
    WritePlan,
    WriteReport,
    plan_write,
    write_image,
    write_plate,
    write_positions,
)

__all__ = [
    "ArrayRef",
    "Dataset",
    "ImageRef",
    "PositionJob",
    "ProcessSummary",
    "UnitWrite",
    "WritePlan",
    "WriteReport",
    "array_to_dask",
    "plan_write",
    "process_positions",
    "read_dataset",
    "settings_like",
    "to_dask",
    "write_image",
    "write_plate",
    "write_positions",
]
