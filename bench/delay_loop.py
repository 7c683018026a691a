"""The listener-capacity baseline: a bare loop of `task.delay(payload)`, as fast as it goes.

`python -m bench.delay_loop PAYLOADS COUNT` prints {"rate", "cpu_s", "sent"}; with `--rate R
--seconds S --probe` it paces itself and stamps each message for the latency baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.bare_app import noop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("payloads", type=Path)
    parser.add_argument("count", type=int)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--probe", action="store_true")
    args = parser.parse_args()
    with args.payloads.open(encoding="utf-8") as lines:
        payloads = [json.loads(line) for line in lines if line.strip()][: args.count]
    noop.delay(payloads[0])  # connect before the clock starts
    cpu0, t0 = time.process_time(), time.perf_counter()
    for index, payload in enumerate(payloads):
        if args.rate:
            delay = t0 + index / args.rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        if args.probe:
            payload = {**payload, "probe_sent_at": time.time()}
        noop.delay(payload)
    elapsed = time.perf_counter() - t0
    result = {"rate": len(payloads) / elapsed, "cpu_s": time.process_time() - cpu0}
    sys.stdout.write(json.dumps({**result, "sent": len(payloads) + 1}) + "\n")


if __name__ == "__main__":
    main()
