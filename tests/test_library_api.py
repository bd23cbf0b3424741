"""The library API (`from pgq_cli import Queue, ...`) on its own: no CLI, no printing, no
Typer/rich, the layers' import rules, frozen dataclasses, validation before SQL, and the
error family at its edge.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq_cli
from pgq_cli.core import checks
from pgq_cli.core.errors import BadPayload, InvalidInput, NotFound, SchemaMissing
from pgq_cli.core.queue import Message, Queue

PACKAGE_DIR = Path(pgq_cli.__file__).parent
# What each layer may not import, at any depth of its own code (function-level imports too).
FORBIDDEN = {
    "core": ("pgq_cli.cli", "pgq_cli.ops", "pgq_cli.bench", "typer", "rich", "tabulate", "click"),
    "ops": ("pgq_cli.cli", "typer", "rich", "click"),
}
# The modules a library user or `pgq --version` can import without loading psycopg.
LIGHT_MODULES = (
    "pgq_cli",
    "pgq_cli.core.exitcodes",
    "pgq_cli.core.errors",
    "pgq_cli.core.checks",
    "pgq_cli.core.states",
    "pgq_cli.core.settings",
    "pgq_cli.core.durations",
    "pgq_cli.core.purge",
)


def _modules_of(layer: str) -> list[str]:
    found = [
        info.name
        for info in pkgutil.walk_packages([str(PACKAGE_DIR / layer)], f"pgq_cli.{layer}.")
    ]
    assert len(found) >= 5, found  # the walk itself works
    return sorted(found)


def _imported_names(module: str) -> set[str]:
    """Every module named by an import statement anywhere in `module`'s source."""
    path = PACKAGE_DIR.joinpath(*module.split(".")[1:]).with_suffix(".py")
    if not path.exists():
        path = PACKAGE_DIR.joinpath(*module.split(".")[1:], "__init__.py")
    package = module.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_every_module_of_a_layer_imports_only_what_its_layer_may(layer: str) -> None:
    bad = {
        module: sorted(
            name for name in _imported_names(module)
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer])
        )
        for module in _modules_of(layer)
    }
    assert {m: names for m, names in bad.items() if names} == {}


def test_the_layering_check_catches_a_forbidden_import() -> None:
    """The ast walk sees relative and function-level imports (so the test above can fail)."""
    assert "typer" in _imported_names("pgq_cli.cli.boundary")
    names = _imported_names("pgq_cli.cli.connection")
    assert {"pgq_cli.core.connect", "pgq_cli.core.queue.Queue"} <= names


@pytest.mark.parametrize("module", _modules_of("core"))
def test_core_modules_do_not_load_typer_rich_or_tabulate(module: str) -> None:
    """At run time too, through third-party imports: each core module in a fresh process."""
    code = (
        f"import {module}, sys; "
        "assert 'typer' not in sys.modules and 'rich' not in sys.modules; "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('typer', 'rich', 'click', 'tabulate') or m.startswith(('pgq_cli.cli', 'pgq_cli.ops'))); "
        "assert not leaked, leaked"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_light_modules_load_no_psycopg_and_no_package_metadata() -> None:
    code = (
        f"import {', '.join(LIGHT_MODULES)}, sys; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg' "
        "or m == 'importlib.metadata'); "
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_psycopg_check_above_can_fail() -> None:
    code = "import pgq_cli, sys; pgq_cli.Queue; assert 'psycopg' in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_public_name_resolves_from_the_package() -> None:
    assert "Queue" in pgq_cli.__all__ and "__version__" in pgq_cli.__all__
    for name in pgq_cli.__all__:
        assert getattr(pgq_cli, name) is not None, name
    assert pgq_cli.Queue is Queue
    assert pgq_cli.InvalidInput is InvalidInput
    assert pgq_cli.ExitCode.USAGE == 2
    assert pgq_cli.MAX_PRIORITY == checks.MAX_PRIORITY == 10
    assert isinstance(pgq_cli.__version__, str) and pgq_cli.__version__
    assert set(pgq_cli.__all__) <= set(dir(pgq_cli))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pgq_cli.Nope  # noqa: B018


def test_the_three_lists_of_public_names_agree() -> None:
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text())
    typed = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        for child in node.body
        if isinstance(child, ast.ImportFrom)
        for alias in child.names
    }
    lazy = {name for names in pgq_cli._EXPORTS.values() for name in names}
    assert typed == lazy == set(pgq_cli.__all__) - {"__version__"}
    assert len(pgq_cli.__all__) == len(set(pgq_cli.__all__))


def test_from_pgq_cli_import_star_gives_the_public_names() -> None:
    code = (
        "from pgq_cli import *; "
        "assert Queue.__module__ == 'pgq_cli.core.queue'; "
        "assert issubclass(StaleLease, PgqError) and State.READY == 'ready'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _private_members(cls: type) -> set[str]:
    return {name for name in vars(cls) if name.startswith("_") and not name.startswith("__")}


def test_no_private_member_of_queue_is_used_outside_its_module() -> None:
    """Everything a library user (or ops, bench, the CLI) needs is public on Queue."""
    private = _private_members(Queue) | {"_q", "_table", "_queues"}
    assert {"_claim_once", "_explain_missing"} <= private
    root = PACKAGE_DIR.parent
    offenders = []
    for path in sorted([*PACKAGE_DIR.rglob("*.py"), *(root / "tests").glob("*.py"),
                        *(root / "bench").glob("*.py")]):
        if path == PACKAGE_DIR / "core" / "queue.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offenders.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
    assert offenders == []


def test_core_prints_nothing(q: Queue, capfd: pytest.CaptureFixture[str]) -> None:
    msg_id = q.send('{"a": 1}')
    q.send_many(['{"b": 2}'])
    (m,) = q.claim()
    q.peek(state="all")
    q.extend(msg_id, vt=10, lease=m.lease)
    q.requeue([msg_id])
    q.requeue_expired()
    q.stats()
    q.ack([msg_id])
    with pytest.raises(NotFound):
        q.ack([msg_id])
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_message_is_frozen_and_json_has_stable_fields(q: Queue) -> None:
    q.send('{"x": [1, 2]}', priority=7, queue="api")
    (m,) = q.claim(queue="api")
    assert isinstance(m, Message)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.priority = 1  # type: ignore[misc]
    as_json = m.to_json()
    assert list(as_json) == [
        "msg_id", "queue", "priority", "state", "payload", "read_ct", "lease", "vt", "enqueued_at",
        "key",
    ]
    assert json.loads(json.dumps(as_json)) == as_json
    assert (as_json["queue"], as_json["priority"], as_json["state"]) == ("api", 7, "leased")
    assert as_json["payload"] == {"x": [1, 2]}
    assert as_json["lease"] == str(m.lease)


def test_send_many_keeps_input_order_and_is_all_or_nothing(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    ids = q.send_many(['{"n": 1}', '{"n": 2}', '{"n": 3}'], priority=4)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [m.payload["n"] for m in q.claim(qty=3)] == [1, 2, 3]
    with pytest.raises(BadPayload, match="line 2"):
        q.send_many(['{"ok": 1}', "{broken", '{"ok": 3}'])
    assert q.send_many([]) == []
    row = conn.execute("SELECT count(*) FROM pgq.messages").fetchone()
    assert row == (3,)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda q: q.send("{}", priority=0), InvalidInput),
        (lambda q: q.send("{}", priority=11), InvalidInput),
        (lambda q: q.send("{}", priority=True), InvalidInput),
        (lambda q: q.send("{}", priority=5.0), InvalidInput),
        (lambda q: q.send("{}", queue="no spaces"), InvalidInput),
        (lambda q: q.send("{}", delay=-1), InvalidInput),
        (lambda q: q.send("{}", delay=float("nan")), InvalidInput),
        (lambda q: q.send("not json"), BadPayload),
        (lambda q: q.send('{"a": NaN}'), BadPayload),
        (lambda q: q.send('"\\u0000"'), BadPayload),
        (lambda q: q.send_many(["{}"], priority=11), InvalidInput),
        (lambda q: q.claim(qty=0), InvalidInput),
        (lambda q: q.claim(qty=checks.MAX_QTY + 1), InvalidInput),
        (lambda q: q.claim(vt=0), InvalidInput),
        (lambda q: q.claim(min_priority=8, max_priority=3), InvalidInput),
        (lambda q: q.peek(state="nope"), InvalidInput),
        (lambda q: q.peek(limit=0), InvalidInput),
        (lambda q: q.ack([]), InvalidInput),
        (lambda q: q.ack([-1]), InvalidInput),
        (lambda q: q.ack([2**63]), InvalidInput),
        (lambda q: q.ack([1], lease="nope"), InvalidInput),
        (lambda q: q.extend(1, vt=-1), InvalidInput),
        (lambda q: q.stats(queue="x y"), InvalidInput),
    ],
)
def test_validation_raises_before_any_sql(
    q: Queue, conn: psycopg.Connection[Any], call: Any, error: type[Exception]
) -> None:
    q.send('{"seed": true}')
    before = conn.execute("SELECT msg_id, state, vt, read_ct, lease FROM pgq.messages").fetchall()
    with pytest.raises(error):
        call(q)
    after = conn.execute("SELECT msg_id, state, vt, read_ct, lease FROM pgq.messages").fetchall()
    assert after == before


def test_invalid_schema_name_is_refused_before_sql(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(InvalidInput):
        Queue(conn, 'pgq"; DROP SCHEMA pgq CASCADE; --')


def test_missing_schema_raises_schema_missing(empty_db_dsn: str) -> None:
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        q = Queue(conn)
        for call in (
            lambda: q.send("{}"),
            lambda: q.send_many(["{}"]),
            lambda: q.claim(),
            lambda: q.peek(),
            lambda: q.stats(),
            lambda: q.ack([1]),
        ):
            with pytest.raises(SchemaMissing):
                call()
        # The connection is still usable afterwards (no aborted transaction left behind).
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_claim_returns_dataclasses_with_server_times(q: Queue, conn: psycopg.Connection[Any]
                                                    ) -> None:
    q.send("{}")
    (m,) = q.claim(vt=120)
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    assert m.enqueued_at <= row[0] < m.vt
    assert 100 < (m.vt - row[0]).total_seconds() <= 120


def test_stats_total_and_rows(q: Queue) -> None:
    q.send("{}", priority=10)
    q.send("{}", priority=1, delay=300)
    q.claim()
    result = q.stats()
    assert result.total == 2
    assert [(r.priority, r.ready, r.leased, r.delayed) for r in result.rows] == [
        (10, 0, 1, 0), (1, 0, 0, 1)
    ]
    assert q.stats(queue="elsewhere").rows == ()
