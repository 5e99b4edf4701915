"""A persistent benchmark worker: ``python -m tools.bench.worker MODULE CANDIDATE CONFIG_JSON``.

It imports only ``tools.bench.MODULE`` (which imports the candidate's framework inside ``make_task``),
sets up with ``make_task(candidate, config)`` and answers one JSON line on stdout per JSON line read
from stdin, ``{"ready": true}`` first, until ``{"cmd": "exit"}`` or the end of stdin. Replies carry
``{"error": traceback}`` when a request fails. Whatever the frameworks print goes to stderr, so stdout
carries the protocol only.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback


def main() -> int:
    module_name, candidate, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # fd 1 (and sys.stdout) now lead to stderr

    def send(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    try:
        module = importlib.import_module(f"tools.bench.{module_name}")
        task = module.make_task(candidate, config)
    except BaseException:
        send({"error": traceback.format_exc()})
        return 1
    send({"ready": True})
    for line in sys.stdin:
        message = json.loads(line)
        if message.get("cmd") == "exit":
            break
        try:
            send(task(message))
        except Exception:
            send({"error": traceback.format_exc()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
