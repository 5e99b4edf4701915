"""Log 10 rows with a flush every 4, then die by SIGKILL: no finalize, no atexit.

usage: python csv_killed.py ROOT_DIR
"""

import os
import signal
import sys

from fabric_loggers import CSVLogger

logger = CSVLogger(sys.argv[1], flush_logs_every_n_steps=4)
for step in range(10):
    metrics = {"loss": step / 10}
    if step >= 6:
        metrics["lr"] = 0.01
    logger.log_metrics(metrics)
os.kill(os.getpid(), signal.SIGKILL)
