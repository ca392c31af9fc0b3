"""A resumed run's metrics.jsonl keeps what its checkpoint accounts for and nothing after it."""

from __future__ import annotations

import json

from jaxbgs.training.checkpoint import Progress
from jaxbgs.training.metrics import MetricsLog, kept_lines


def test_lines_after_the_checkpoint_and_a_torn_line_are_dropped(tmp_path):
    rows = [{"step": s, "loss": 1.0} for s in range(6)] + [{"epoch": 1, "val_r2": 0.1}]
    rows += [{"step": s, "loss": 2.0} for s in range(6, 9)] + [{"epoch": 2, "val_r2": 0.2}]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 9, "lo'  # killed mid-line
    keep = kept_lines(text, Progress(epoch=1, global_step=7))
    assert [json.loads(x) for x in keep] == rows[:7] + [rows[7]]  # steps 0-6 and epoch 1
    (tmp_path / "metrics.jsonl").write_text(text)
    log = MetricsLog(tmp_path, Progress(epoch=1, global_step=7))
    log.step({"step": 7, "loss": 3.0})
    log.close()
    steps = [json.loads(x).get("step") for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1, 2, 3, 4, 5, None, 6, 7]
