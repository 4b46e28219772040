"""The RQ worker process: L1's queues, the JSON serializer, a job id on every log line."""

from __future__ import annotations

import argparse
import logging

from rq import Queue, Worker
from rq.serializers import JSONSerializer

from l1web.settings import Settings
from l1web.state import connect

#: Queues a worker listens on by default, highest priority first.
DEFAULT_QUEUES = ("steps", "runs", "default")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run an L1 render worker.")
    parser.add_argument("queues", nargs="*", default=list(DEFAULT_QUEUES))
    parser.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    connection = connect(settings.redis_url, decode=False)
    queues = [Queue(name, connection=connection, serializer=JSONSerializer) for name in args.queues]
    worker = Worker(queues, connection=connection, serializer=JSONSerializer, name=args.name)
    worker.work(burst=args.burst, with_scheduler=True)
