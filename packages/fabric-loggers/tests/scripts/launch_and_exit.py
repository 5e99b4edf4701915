"""A launched run that logs 5 rows (below the flush threshold) and simply ends: atexit must finalise.

usage: python launch_and_exit.py   (writes logs/fabric_logs/version_0/metrics.csv in the working directory)
"""

from fabric_core import Fabric


def train(fabric):
    for step in range(5):
        fabric.log("loss", 1.0 / (step + 1))


Fabric(accelerator="cpu", loggers="csv").launch(train)
