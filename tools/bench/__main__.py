"""``python -m tools.bench``: see ``tools/bench/run.py`` and docs/benchmarks-howto.md."""

from tools.bench.run import main

if __name__ == "__main__":
    raise SystemExit(main())
