"""The RMM agent: collects a managed host's health and reports it to the server."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rmm")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
