"""A relay process for the takeover tests: publishes one batch, says so, and waits to be killed."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from odr_shared.db import make_engine
from odr_shared.kafka import make_producer
from odr_shared.outbox import OutboxRelay


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--ready-file", required=True)
    args = p.parse_args()
    relay = OutboxRelay(
        make_engine(args.db), make_producer(args.bootstrap), batch_size=args.batch_size
    )
    published = relay.publish_batch()
    Path(args.ready_file).write_text(str(published))
    while True:  # holding the relay's lock until killed
        time.sleep(1)


if __name__ == "__main__":
    main()
