"""The package's layering: pure layers do no I/O imports, optional engines load lazily.

Checked on the source (which omestream modules each layer imports) and in a fresh
interpreter (which third-party modules an import actually pulls in).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import omestream

PACKAGE = Path(omestream.__file__).parent

# Layer -> omestream subpackages it may import (besides itself and `errors`).
ALLOWED = {
    "settings": set(),
    "plan": {"settings"},
    "metadata": {"settings", "plan"},
    "pyramid": {"settings", "plan", "metadata"},
}
PURE_MODULES = ["settings", "plan", "metadata", "pyramid.kernels", "pyramid.streaming"]
OPTIONAL_ENGINES = ["tensorstore", "acquire_zarr", "dask", "distributed", "s3fs"]
STORAGE = ["zarr", "tifffile", *OPTIONAL_ENGINES]


def _omestream_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "omestream" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_point_down(layer: str) -> None:
    allowed = ALLOWED[layer] | {layer, "errors"}
    bad = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        if layer == "pyramid" and path.stem not in ("kernels", "streaming", "__init__"):
            continue  # pyramid.build reads and writes stores; only the planning part is pure
        wrong = _omestream_imports(path) - allowed
        if wrong:
            bad[path.name] = sorted(wrong)
    assert not bad, f"{layer} imports layers above it: {bad}"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return {m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])}


def test_importing_the_package_loads_no_optional_engine() -> None:
    loaded = _modules_after("import omestream")
    assert not loaded & set(OPTIONAL_ENGINES)


def test_pure_layers_load_no_storage_library() -> None:
    code = "\n".join(f"import omestream.{m}" for m in PURE_MODULES)
    loaded = _modules_after(code)
    assert not loaded & set(STORAGE), sorted(loaded & set(STORAGE))
