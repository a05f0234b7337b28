"""The version of this installation: one source (``pyproject.toml``), read from the package metadata."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ai-governance-irb")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
