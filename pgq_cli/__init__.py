"""pgq: a Postgres-backed priority message queue, and the `pgq` CLI to run it.

The library API is `pgq_cli.queue.Queue`; the CLI (`pgq_cli.cli`) is a thin layer over it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pgq-cli")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
