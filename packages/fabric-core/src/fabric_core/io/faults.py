"""Fault-injection points of checkpoint saves: the places where a crash is tested.

Save and commit code calls :func:`checkpoint_step` between its steps ("tmp-created", "tmp-written",
"renamed", ...). In normal runs it does nothing. A test replaces it in a subprocess to end the process
exactly at one step, and then checks that a load sees the old or the new checkpoint, never a mix::

    import os
    from fabric_core.io import faults

    faults.checkpoint_step = lambda name: os._exit(1) if name == "renamed" else None
    fabric.save("model.ckpt", state)  # the process ends right after the rename

Callers look the function up on this module at call time (``faults.checkpoint_step("x")``), never with
``from fabric_core.io.faults import checkpoint_step``, so that a replacement is seen.
"""

from __future__ import annotations


def checkpoint_step(name: str) -> None:
    """Mark that a checkpoint save has just finished the step ``name``; a no-op unless a test replaces it."""
