"""The omestream command line."""

from omestream.cli.app import app, main

__all__ = ["app", "main"]
