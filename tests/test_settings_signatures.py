"""The typed constructors of the settings models match their fields.

Type checkers read these ``__init__`` signatures (declared under ``TYPE_CHECKING``)
instead of the field annotations, so a field added without them could not be passed
by type-checked code, and a wrong default would be advertised.
"""

from __future__ import annotations

import ast
import inspect
import sys

import pytest
from pydantic_core import PydanticUndefined

from omestream.settings import acquisition, dimensions


def _typed_inits() -> dict[str, ast.FunctionDef]:
    out = {}
    for module in (acquisition, dimensions):
        tree = ast.parse(inspect.getsource(module))
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            for stmt in cls.body:
                if isinstance(stmt, ast.If) and ast.unparse(stmt.test) == "TYPE_CHECKING":
                    for fn in stmt.body:
                        if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                            out[f"{module.__name__}.{cls.name}"] = fn
    return out


TYPED = _typed_inits()
# Keyword names a model also takes for one of its fields (ome-writers' spellings).
SPELLINGS = {"Channel": dimensions._NM_ALIASES}


def test_the_coercing_models_have_typed_constructors() -> None:
    names = {key.rsplit(".", 1)[1] for key in TYPED}
    assert {"AcquisitionSettings", "Plate", "Channel", "Dimension", "PositionDimension"} <= names


@pytest.mark.parametrize("key", sorted(TYPED))
def test_typed_constructor_matches_fields(key: str) -> None:
    module_name, cls_name = key.rsplit(".", 1)
    model = getattr(sys.modules[module_name], cls_name)
    fn = TYPED[key]
    assert not fn.args.args[1:] and fn.args.vararg is None and fn.args.kwarg is None
    params = [a.arg for a in fn.args.kwonlyargs]
    fields = list(model.model_fields)
    assert params[: len(fields)] == fields, "parameters must follow the fields, in order"
    # After the fields, only other spellings of them that the model accepts.
    spellings = SPELLINGS.get(cls_name, {})
    assert set(params[len(fields) :]) == set(spellings), "other spellings, and only those"
    assert set(spellings.values()) <= set(fields)
    for arg, default in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True):
        if arg.arg in spellings:
            assert default is not None and ast.literal_eval(default) is None, arg.arg
            continue
        field = model.model_fields[arg.arg]
        assert (default is None) == field.is_required(), arg.arg
        if default is None or ast.unparse(default) == "...":
            continue
        expected = field.default if field.default is not PydanticUndefined else None
        assert ast.literal_eval(default) == expected, arg.arg
