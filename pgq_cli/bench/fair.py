"""`pgq bench --keys N`: the claim of a fair queue, measured beside the ordinary claim.

The fair design is the real `Queue.claim` on a queue configured `--fair` in the same
scratch schema, with the same backlogs as the ordinary design; only its ready messages
carry keys: spread round robin over `keys` keys, and with `hot_key` > 0 that many more on
one key ("hot": one tenant's huge backlog beside many small ones). Levels run side by side
with the ordinary design, so "fair p99 / ordinary p99" is read off one run.
"""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg

from ..core import fair_queries
from ..core.checks import MAX_PRIORITY, MIN_PRIORITY
from . import schema as bench_sql
from .runner import BENCH_VT_S, PgqDesign, _explain

FAIR_SUFFIX = "-fair"
HOT_KEY = "hot"

# Ready work for the fair queue: priorities 1..5 like ADD_READY, keys k0..k(N-1) in turn.
ADD_READY_KEYED: LiteralString = """
INSERT INTO {messages} (queue, priority, state, vt, payload, key)
SELECT %(queue)s, 1 + g %% 5, 'ready', now(), jsonb_build_object('n', g),
       'k' || (g %% %(keys)s)
FROM generate_series(1, %(count)s) AS g
"""

ADD_READY_ONE_KEY: LiteralString = """
INSERT INTO {messages} (queue, priority, state, vt, payload, key)
SELECT %(queue)s, 1 + g %% 5, 'ready', now(), jsonb_build_object('n', g), %(key)s
FROM generate_series(1, %(count)s) AS g
"""


class FairDesign(PgqDesign):
    """`Queue.claim` on a fair queue (its name: the level's queue + FAIR_SUFFIX)."""

    name = "fair"

    def __init__(self, schema: str, *, keys: int, hot_key: int = 0) -> None:
        super().__init__(schema)
        if keys < 1 or hot_key < 0:
            raise ValueError("keys must be >= 1 and hot_key >= 0")
        self.keys = keys
        self.hot_key = hot_key
        self._configured: set[str] = set()
        self._hot_added: set[str] = set()

    def _fair(self, conn: psycopg.Connection[Any], queue: str) -> str:
        fair_queue = queue + FAIR_SUFFIX
        if fair_queue not in self._configured:
            self._queue(conn).configure_fairness(fair_queue, fair=True)
            self._configured.add(fair_queue)
        return fair_queue

    def claim(self, conn: psycopg.Connection[Any], queue: str, qty: int) -> list[int]:
        return super().claim(conn, self._fair(conn, queue), qty)

    def add_backlog(self, conn: psycopg.Connection[Any], kind: str, queue: str, n: int) -> None:
        super().add_backlog(conn, kind, self._fair(conn, queue), n)

    def top_up_ready(self, conn: psycopg.Connection[Any], queue: str, n: int) -> None:
        fair_queue = self._fair(conn, queue)
        if self.hot_key and fair_queue not in self._hot_added:
            conn.execute(
                self.q(ADD_READY_ONE_KEY),
                {"queue": fair_queue, "count": self.hot_key, "key": HOT_KEY},
            )
            self._hot_added.add(fair_queue)
        row = conn.execute(self.q(bench_sql.COUNT_READY), {"queue": fair_queue}).fetchone()
        have = int(row[0]) if row else 0
        want = n + self.hot_key  # the ordinary design gets as many (runner.run)
        if have < want:
            conn.execute(
                self.q(ADD_READY_KEYED),
                {"queue": fair_queue, "count": want - have, "keys": self.keys},
            )

    def explain(self, conn: psycopg.Connection[Any], queue: str, qty: int) -> str:
        # The function's plan is not visible through EXPLAIN of its call; show its key probe.
        params = {
            "queue": self._fair(conn, queue),
            "key": "k0",
            "min_priority": MIN_PRIORITY,
            "max_priority": MAX_PRIORITY,
            "limit": qty,
            "qty": qty,
            "vt": BENCH_VT_S,
        }
        probe = _explain(conn, self.q(fair_queries.FAIR_KEY_PROBE), params)
        call = _explain(conn, self.q(fair_queries.FAIR_CLAIM), params)
        return f"-- the fair claim (one function call)\n{call}\n-- its probe of one key\n{probe}"
