"""One process of a tiny data-parallel demo run on CPU: 3 steps, then the checkpoint.

tests/test_sharding.py starts it alone (one process, one device) and as two processes talking
through JAX's distributed runtime with CPU (gloo) collectives:
    python -m tests.distributed_demo OUT CACHE PROCESS_ID NUM_PROCESSES PORT
"""

from __future__ import annotations

import dataclasses
import sys


def main(out: str, cache: str, pid: int, n: int, port: int) -> None:
    from jaxbgs import sharding

    if n > 1:
        sharding.initialize_distributed(f"localhost:{port}", n, pid)
    import experiments
    from jaxbgs import train
    from jaxbgs.trainer import demo

    demo.N_VIDEOS, demo.N_TEST, demo.PRETRAIN_CLIPS, demo.PRETRAIN_STEPS = 40, 10, 64, 2
    exp = dataclasses.replace(experiments.get("demo"), max_steps=3, out=out, cache=cache)
    res = train.run(exp)
    assert res == {"stopped_at_step": 3, "signal": None}, res


if __name__ == "__main__":
    out, cache, pid, n, port = sys.argv[1:]
    main(out, cache, int(pid), int(n), int(port))
