"""The measuring client as its own process: `python -m bench.client '<json>'`.

The JSON names a workload and its arguments; the result goes to stdout as one JSON object with
the client's own CPU time, so the client's cost is reported beside the daemon's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import orjson

from bench.concurrency import concurrency
from bench.control import control
from bench.durable import client as durable
from bench.latency import latency
from bench.procfs import self_cpu_seconds
from bench.streams import firehose, integrity, slow_client

WORKLOADS: dict[str, Callable[..., dict[str, Any]]] = {
    "W1": firehose,
    "W2": integrity,
    "W3": slow_client,
    "W4": control,
    "W5": concurrency,
    "W8": latency,
    "W9": durable,
}


def main() -> None:
    spec = orjson.loads(sys.argv[1])
    workload = WORKLOADS[spec.pop("workload")]
    cpu = self_cpu_seconds()
    result = workload(**spec)
    # A workload may report its own figure, leaving out set-up that is not measured.
    result.setdefault("client_cpu", self_cpu_seconds() - cpu)
    sys.stdout.buffer.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
