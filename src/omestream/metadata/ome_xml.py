"""OME-XML (OME data model) built with ome-types from a StoragePlan. Pure functions."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

from ome_types import OME
from ome_types import model as m

from omestream.plan import ImagePlan, StoragePlan
from omestream.settings.units import ome_xml_unit

__all__ = ["build_ome", "ome_dimension_map", "ome_dimension_order"]

_PIXEL_TYPES = {
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "int8": "int8",
    "int16": "int16", "int32": "int32", "float32": "float", "float64": "double",
}  # fmt: skip


def ome_dimension_map(image: ImagePlan) -> dict[str, str]:
    """Storage axis name -> OME letter (T, C, Z, Y, X) for the outer axes and the frame."""
    names = image.axis_names
    out = {names[-2]: "Y", names[-1]: "X"}
    free = ["T", "C", "Z"]
    by_type = {"time": "T", "channel": "C", "space": "Z"}
    pending = []
    for a in image.axes[:-2]:
        letter = by_type.get(a.type)
        if letter in free:
            out[a.name] = letter
            free.remove(letter)
        else:
            pending.append(a.name)
    for name in pending:  # custom axes take whichever OME letter is left
        out[name] = free.pop(0)
    return out


def ome_dimension_order(image: ImagePlan) -> str:
    """OME DimensionOrder (fastest first) for planes stored in the image's axis order."""
    letters = ome_dimension_map(image)
    outer = [letters[a.name] for a in reversed(image.axes[:-2])]
    rest = [x for x in "ZCT" if x not in outer]
    return "XY" + "".join(outer + rest)


def _pixels(image: ImagePlan, shape: Sequence[int], dtype: str, index: int) -> m.Pixels:
    letters = ome_dimension_map(image)
    sizes = {"T": 1, "C": 1, "Z": 1}
    kw: dict[str, object] = {}
    for a, n in zip(image.axes, shape, strict=True):
        letter = letters[a.name]
        if letter in sizes:
            sizes[letter] = max(int(n), 1)
        unit = ome_xml_unit(a.unit)
        if letter in "XYZ" and a.scale and unit:
            kw[f"physical_size_{letter.lower()}"] = a.scale
            kw[f"physical_size_{letter.lower()}_unit"] = unit
        if letter == "T" and a.scale and unit and a.scale != 1.0:
            kw["time_increment"] = a.scale
            kw["time_increment_unit"] = unit
    channels = []
    for c in range(sizes["C"]):
        ch = image.channels[c] if image.channels and c < len(image.channels) else None
        ckw: dict[str, object] = {"id": f"Channel:{index}:{c}", "samples_per_pixel": 1}
        if ch is not None:
            ckw["name"] = ch.name
            if ch.color:
                ckw["color"] = m.Color(f"#{ch.color}")
            if ch.excitation_wavelength:
                ckw["excitation_wavelength"] = ch.excitation_wavelength
            if ch.emission_wavelength:
                ckw["emission_wavelength"] = ch.emission_wavelength
            if ch.fluorophore:
                ckw["fluor"] = ch.fluorophore
        channels.append(m.Channel(**ckw))
    return m.Pixels(
        id=f"Pixels:{index}",
        dimension_order=ome_dimension_order(image),
        type=_PIXEL_TYPES[dtype],
        size_x=int(shape[-1]),
        size_y=int(shape[-2]),
        size_z=sizes["Z"],
        size_c=sizes["C"],
        size_t=sizes["T"],
        channels=channels,
        big_endian=False,
        **kw,
    )


def build_ome(
    plan: StoragePlan,
    shapes: Sequence[Sequence[int]] | None = None,
    acquisition_date: _dt.datetime | None = None,
    metadata_only: bool = True,
) -> OME:
    """One OME Image per plan image (plus Plate/Well/WellSample for plates).

    ``shapes`` overrides the planned level-0 shape per image (e.g. the frames actually
    written to an unbounded acquisition).
    """
    date = acquisition_date or _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    images = []
    for i, im in enumerate(plan.images):
        shape = shapes[i] if shapes is not None else im.levels[0].shape
        pixels = _pixels(im, shape, plan.dtype, i)
        if metadata_only:
            pixels.metadata_only = m.MetadataOnly()
        images.append(m.Image(id=f"Image:{i}", name=im.name, acquisition_date=date, pixels=pixels))
    ome = OME(images=images, creator="omestream")
    if plan.layout == "plate" and plan.plate is not None:
        rows = list(plan.plate.row_names)
        cols = list(plan.plate.column_names)
        index_of = {im.path: i for i, im in enumerate(plan.images)}
        wells = []
        sample = 0
        for w, (r, c, fields) in enumerate(plan.wells):
            samples = []
            for f in fields:
                img = index_of[f"{r}/{c}/{f}"]
                samples.append(
                    m.WellSample(
                        id=f"WellSample:0:{w}:{len(samples)}",
                        index=sample,
                        image_ref=m.ImageRef(id=f"Image:{img}"),
                    )
                )
                sample += 1
            wells.append(
                m.Well(id=f"Well:0:{w}", row=rows.index(r), column=cols.index(c), well_samples=samples)
            )
        ome.plates = [
            m.Plate(
                id="Plate:0",
                name=plan.plate.name or "Plate",
                rows=len(rows),
                columns=len(cols),
                wells=wells,
            )
        ]
    return ome
