"""Vagt: a security gateway that serves local language models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vagt")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
