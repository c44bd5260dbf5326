"""`omestream tree`: the Zarr hierarchy with shapes, dtypes and what each group is."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from omestream.cli.app import app
from omestream.errors import StoreFormatError
from omestream.metadata.parse import ngff_content
from omestream.summary.nodes import Node, read_tree

__all__ = ["build_tree", "tree"]


def _group_label(node: Node, name: str | None = None) -> Text:
    label = Text(name or node.name, style="bold blue")
    try:
        version, content = ngff_content(node.attrs, node.path)
    except StoreFormatError:
        return label.append("  (malformed NGFF metadata)", style="red")
    tags: list[str] = [
        k for k in ("multiscales", "omero", "plate", "well", "series") if k in content
    ]
    if "bioformats2raw.layout" in content:
        tags.append("bioformats2raw")
    if tags:
        label.append(f"  {', '.join(tags)}", style="magenta")
        label.append(f" (NGFF {version})", style="dim")
    return label


def _array_label(node: Node) -> Text:
    label = Text(node.name, style="green")
    if node.meta_error:
        return label.append(f"  {node.meta_error}", style="red")
    m = node.meta
    label.append(f"  {' × '.join(str(s) for s in m.shape)}  {m.dtype}", style="")
    if m.dimension_names and any(m.dimension_names):
        label.append(f"  [{', '.join(str(d) for d in m.dimension_names)}]", style="dim")
    chunks = "×".join(str(c) for c in m.chunks)
    label.append(f"  chunks {chunks}", style="dim")
    if m.shards:
        label.append(f"  shards {'×'.join(str(s) for s in m.shards)}", style="dim")
    return label


def build_tree(root: Node, max_depth: int | None = None, name: str | None = None) -> Tree:
    """A rich Tree of ``root`` (groups first by name, arrays with shape and dtype)."""
    t = Tree(_group_label(root, name) if root.kind == "group" else _array_label(root))

    def add(branch: Tree, node: Node, depth: int) -> None:
        if max_depth is not None and depth >= max_depth:
            if node.children:
                branch.add(Text(f"… {len(node.children)} more", style="dim"))
            return
        for child in sorted(node.children, key=lambda n: (n.kind != "group", _key(n.name))):
            if child.kind == "group":
                add(branch.add(_group_label(child)), child, depth + 1)
            else:
                branch.add(_array_label(child))

    add(t, root, 0)
    return t


def _key(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)


@app.command()
def tree(
    path: str = typer.Argument(..., help="An OME-Zarr (or any Zarr) store, folder or URL."),
    depth: int | None = typer.Option(
        None, "--depth", "-d", min=1, help="Show at most this many levels."
    ),
) -> None:
    """Show the Zarr hierarchy: groups (with their NGFF role), arrays with shape and dtype.

    Example: omestream tree plate.ome.zarr --depth 3
    """
    name = path.rstrip("/").rsplit("/", 1)[-1] or path
    Console().print(build_tree(read_tree(path), depth, name))
