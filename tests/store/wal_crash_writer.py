"""A server stand-in for the crash test: appends requests until it is killed.

Run as `python wal_crash_writer.py ROOT PREFIX SECONDS [worker|in-process]` (where the flusher
converts the WAL: a worker process, the default, or this one). It recovers the log first (as the
server does at start), prints `ready`, then two threads append small batches of requests to a
real `ParquetLogStore` flushing every 50 ms, and print each request id once `append_requests`
returned: that line is the acknowledgment. A request id ends in its row count, so the test
knows which rows each one must have. It stops by itself after SECONDS or 100,000 requests.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime, timedelta

from modelloop.store import LoggedRequest, ParquetLogStore

DAY = datetime(2013, 3, 1)


def request(prefix: str, index: int) -> LoggedRequest:
    rows = 1 + index % 3
    request_id = f"{prefix}-{index}-{rows}"
    start = DAY + timedelta(days=index % 3, minutes=index % 1000)
    columns: dict[str, list[object]] = {
        "flight_id": [f"{request_id}-{row}" for row in range(rows)],
        "sched_dep": [start + timedelta(hours=row * 9) for row in range(rows)],  # may cross midnight
        "distance": [float(index + row) if row != 1 else None for row in range(rows)],
        "carrier": [f"C{index % 7}" if row != 2 else None for row in range(rows)],
    }
    if index % 5 == 0:  # another model version's feature set
        columns["temperature"] = [12.5] * rows
        del columns["carrier"]
    served = datetime.now(UTC).replace(tzinfo=None)
    return LoggedRequest(request_id, 1 + index % 2, served, columns, [0.25] * rows)


def main() -> None:
    root, prefix, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    where = sys.argv[4] if len(sys.argv) > 4 else "worker"
    store = ParquetLogStore(
        root,
        "flights",
        id_column="flight_id",
        timestamp_column="sched_dep",
        target_column="delayed",
        flush_interval=0.05,
        flush_in_worker=where == "worker",
    )
    store.recover()
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    printing = threading.Lock()
    counter = iter(range(100_000))
    counting = threading.Lock()

    def serve() -> None:
        while time.monotonic() < deadline:
            with counting:
                indexes = [next(counter, None) for _ in range(4)]
            batch = [request(prefix, i) for i in indexes if i is not None]
            if not batch:
                return
            store.append_requests(batch)
            with printing:
                sys.stdout.write("".join(f"{r.request_id}\n" for r in batch))
                sys.stdout.flush()

    threads = [threading.Thread(target=serve) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    main()
