"""The `pgq` command line, over the library in `core/` and the operations in `ops/`.

- `main.py`: builds the application (`build_app`) and is the console-script entry point;
  a command's module is imported when that command runs (its docstring has the rule).
- `app.py`: the root Typer (help, --debug, --version, one-line usage errors).
- One module per command group, each declaring its commands on a Typer of its own:
  `demo.py`, `schema.py` (migrate), `messages.py` (send, claim, peek, ack, requeue,
  extend), `work.py` (work: a command per message), `stats.py`, `queues.py` (queues,
  queue config), `pause.py` (pause, resume), `ops.py` (purge, watch, doctor), `bench.py`.
- `pipeline.py`: `ack -` and `requeue -`, reading `claim --json` lines from stdin.
- `options.py`: option aliases shared by every command; `completion.py`: queue names;
  `coercion.py`: option values read without pydantic (start-up time).
- `output.py`: everything written to stdout (tables, frames, reports) and the stderr console.
- `boundary.py`: the one error boundary (one stderr line, an exit code, masked secrets).
- `connection.py`: where to connect and the session a command runs in.
"""
