"""The fabric-core benchmark: fabric_core side by side with raw PyTorch, Lightning Fabric and Accelerate.

Run it with ``python -m tools.bench`` from the repository root (``hatch run bench:run`` installs the
competitors first); docs/benchmarks-howto.md explains the method and the output.

One module per workload, each with a ``run(ctx)`` that returns its tables:

- ``step``          training-step time, tiny MLP and small CNN, 32-true and bf16-mixed (persistent workers)
- ``imports``       import time and resident memory over ``import torch`` (fresh processes)
- ``first_fabric``  the first ``Fabric(accelerator="cpu")`` after the import (fresh processes)
- ``ddp``           two-process gloo throughput (``ddp_train`` is the script each rank runs)
- ``deepspeed_zero`` ZeRO stages 2 and 3 on two CPU processes, fabric-core against DeepSpeed's engine by hand
                    (workload ``deepspeed``; ``deepspeed_train`` is the script each rank runs)
- ``checkpoint``    save and load of a ~200 MB model (persistent workers)
- ``gpu``           a GPT-2-small training step on CUDA in bf16-mixed, when there is a GPU

``common`` holds the candidates, the worker protocol, the round-robin alternation and the statistics;
``worker`` is the worker process; ``report`` writes the Markdown and JSON; ``run`` is the command line.
"""
