"""The states of a message: the four it is stored in, and the five it is shown in.

Stored (`messages.state`, CHECKed by sql/0001): ready, leased, delayed, dead. A lease that
has run out is still stored as leased until a claim takes it back (there is no daemon),
so what `stats`, `peek` and `purge` show adds one effective state, expired. Imports
nothing, so the CLI can name the states without loading psycopg.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """A message's stored state."""

    READY = "ready"
    LEASED = "leased"
    DELAYED = "delayed"
    DEAD = "dead"


class EffectiveState(StrEnum):
    """What a message is now: its stored state, with a lease past its vt as expired."""

    READY = "ready"
    LEASED = "leased"
    EXPIRED = "expired"
    DELAYED = "delayed"
    DEAD = "dead"


# In the order the stats columns show them.
EFFECTIVE_STATES: tuple[str, ...] = tuple(s.value for s in EffectiveState)
