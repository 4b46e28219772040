"""RQ jobs: top-level functions taking ids, run by `worker.py` processes."""
