"""Typer application: each command is a thin layer over the public API."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from omestream.errors import OmeStreamError


class _SwitchHelp:
    """--help shown as a switch like our flags (see flag()); typer shows it as <bool>."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class _Command(_SwitchHelp, TyperCommand):
    pass


class _Group(_SwitchHelp, TyperGroup):
    pass


class _App(typer.Typer):
    """Commands of this app are :class:`_Command` unless they say otherwise."""

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _App(
    cls=_Group,
    name="omestream",
    help="Write, inspect, check and convert OME-Zarr and OME-TIFF datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # lines of a docstring paragraph rewrap to the terminal
)

_state = {"debug": False}


def flag(default: bool, *names: str, help: str) -> Any:
    """A boolean option, shown without a value placeholder: it is a switch."""
    return typer.Option(default, *names, help=help, metavar="")


@app.callback()
def _root(
    debug: bool = flag(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    _state["debug"] = debug


def _register() -> None:
    # Command modules register themselves on import: one line per module.
    import_module("omestream.cli.convert")
    import_module("omestream.cli.demo")
    import_module("omestream.cli.info")
    import_module("omestream.cli.pyramid")
    import_module("omestream.cli.repair")
    import_module("omestream.cli.tree")
    import_module("omestream.cli.validate")
    import_module("omestream.cli.view")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: errors become one clear line and a non-zero exit code."""
    _register()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = app(args=argv, standalone_mode=False)
    except OmeStreamError as exc:
        if debug:
            raise
        typer.secho(f"error: {exc}", err=True, fg="red")
        return 1
    except (FileNotFoundError, PermissionError) as exc:
        if debug:
            raise
        typer.secho(f"error: {exc}", err=True, fg="red")
        return 1
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        return 130
    except Exception as exc:  # usage errors and the like
        if _is_usage_error(exc):
            exc.show()  # type: ignore[attr-defined]
            return int(exc.exit_code)  # type: ignore[attr-defined]
        if debug:
            raise
        typer.secho(f"error: {type(exc).__name__}: {exc}", err=True, fg="red")
        return 1
    # without standalone mode, click returns the code of `raise typer.Exit(code)`
    return code if isinstance(code, int) else 0


def in_cli_words(exc: OmeStreamError, words: Sequence[tuple[str, str]]) -> None:
    """Reword ``exc``'s message (in place) from the Python API's advice to the command
    line's, e.g. ``("overwrite=True", "--overwrite")``."""
    if len(exc.args) != 1 or not isinstance(exc.args[0], str):
        return
    text = exc.args[0]
    for api, cli in words:
        text = text.replace(api, cli)
    exc.args = (text,)


def _is_usage_error(exc: Exception) -> bool:
    """Click's usage errors (a missing argument, an unknown command, help for no
    arguments), which show themselves; newer typer raises its own copy of them."""
    kinds: list[type] = [getattr(typer, "TyperException", OmeStreamError)]
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:  # newer typer does not need click
        pass
    return isinstance(exc, tuple(kinds)) and hasattr(exc, "show") and hasattr(exc, "exit_code")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
