"""RQ worker entry point: `python worker.py [queue ...]` (JSON serializer, L1's queues)."""

from l1web.worker import main

if __name__ == "__main__":
    main()
