"""The reliability figures of docs/reliability.md, measured in fresh processes: ``python -m tools.reliability``.

One module per measurement, each with a ``run(ctx)`` that returns its result (a one-line summary, table
rows and every run's record):

- ``exits``      runs without an exit crash (``scripts/ddp_exit.py``)
- ``kills``      kills during saves survived, single-file and sharded (``scripts/save_loop.py``, ``sharded_loop.py``)
- ``dead_rank``  time for a dead rank to end the run (``scripts/rank_dies.py``)

``processes`` runs every command in a process group of its own, bounded in time; ``context`` holds the
command line's choices; ``__main__`` is the command line and the table.
"""
