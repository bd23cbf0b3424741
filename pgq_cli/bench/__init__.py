"""`pgq bench`: the measuring in `runner.py`, the naive design's SQL in `schema.py`."""

# The in-flight backlog sizes measured unless --inflight says otherwise. Here rather than
# in the runner so that `pgq bench --help` shows them without loading it (and psycopg).
DEFAULT_INFLIGHT = (0, 10_000, 100_000, 1_000_000)
