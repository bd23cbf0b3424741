"""pgq: a Postgres-backed priority message queue, and the `pgq` CLI to run it.

The public library API is what this package exports (`__all__`): `from pgq_cli import
Queue, Message, InvalidInput, ...`. The CLI (`pgq_cli.cli`) is a thin layer over it.

This module runs on every `pgq` start, so it imports nothing itself: each name is loaded
from its module on first use (`__getattr__`), and `__version__` is read from the installed
package metadata only when asked for. `import pgq_cli` loads no psycopg.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core.checks import (
        DEFAULT_PRIORITY,
        DEFAULT_QUEUE,
        DEFAULT_SCHEMA,
        DEFAULT_VT_S,
        MAX_PAYLOAD_BYTES,
        MAX_PRIORITY,
        MAX_QTY,
        MIN_PRIORITY,
        CheckedPayload,
        Envelope,
    )
    from .core.errors import (
        BadPayload,
        ConfigError,
        ConnectFailed,
        EmptyClaim,
        InvalidInput,
        NotFound,
        NothingDone,
        PermissionDenied,
        PgqError,
        SchemaForeign,
        SchemaMissing,
        StaleLease,
        Temporary,
    )
    from .core.exitcodes import ExitCode
    from .core.purge import PurgeResult
    from .core.queue import IdResult, Message, PriorityStats, Queue, QueueStats, Sent
    from .core.settings import ConfigResult, DedupWindow, QueueInfo, QueueSettings
    from .core.states import EffectiveState, State
    from .core.worker import Reject, Retry

    __version__: str

# The module that defines each public name. The names are listed three times, for three
# readers: here for `__getattr__`, above for type checkers, and in `__all__`; a test keeps
# the three lists equal.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "core.checks": (
        "DEFAULT_PRIORITY",
        "DEFAULT_QUEUE",
        "DEFAULT_SCHEMA",
        "DEFAULT_VT_S",
        "MAX_PAYLOAD_BYTES",
        "MAX_PRIORITY",
        "MAX_QTY",
        "MIN_PRIORITY",
        "CheckedPayload",
        "Envelope",
    ),
    "core.errors": (
        "BadPayload",
        "ConfigError",
        "ConnectFailed",
        "EmptyClaim",
        "InvalidInput",
        "NotFound",
        "NothingDone",
        "PermissionDenied",
        "PgqError",
        "SchemaForeign",
        "SchemaMissing",
        "StaleLease",
        "Temporary",
    ),
    "core.exitcodes": ("ExitCode",),
    "core.purge": ("PurgeResult",),
    "core.queue": ("IdResult", "Message", "PriorityStats", "Queue", "QueueStats", "Sent"),
    "core.settings": ("ConfigResult", "DedupWindow", "QueueInfo", "QueueSettings"),
    "core.states": ("EffectiveState", "State"),
    "core.worker": ("Reject", "Retry"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "DEFAULT_PRIORITY",
    "DEFAULT_QUEUE",
    "DEFAULT_SCHEMA",
    "DEFAULT_VT_S",
    "MAX_PAYLOAD_BYTES",
    "MAX_PRIORITY",
    "MAX_QTY",
    "MIN_PRIORITY",
    "BadPayload",
    "CheckedPayload",
    "ConfigError",
    "ConfigResult",
    "ConnectFailed",
    "DedupWindow",
    "EffectiveState",
    "EmptyClaim",
    "Envelope",
    "ExitCode",
    "IdResult",
    "InvalidInput",
    "Message",
    "NotFound",
    "NothingDone",
    "PermissionDenied",
    "PgqError",
    "PriorityStats",
    "PurgeResult",
    "Queue",
    "QueueInfo",
    "QueueSettings",
    "QueueStats",
    "Reject",
    "Retry",
    "SchemaForeign",
    "SchemaMissing",
    "Sent",
    "StaleLease",
    "State",
    "Temporary",
    "__version__",
]


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pgq-cli")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _installed_version()
    elif name in _HOME:
        value = getattr(import_module(f".{_HOME[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups find it without calling __getattr__
    return value


def __dir__() -> list[str]:
    return sorted((*globals(), *__all__))
