"""metrics.jsonl and TensorBoard event files beside it (`tensorboard --logdir runs/`), from process 0.

A resumed run continues from its last checkpoint, so whatever the interrupted leg logged after that
checkpoint is dropped first (and a line a kill cut short): every step and every epoch is logged
exactly once across the legs, in the JSON lines as in TensorBoard (`purge_step`).
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

from jaxbgs.files import write_text_atomic
from jaxbgs.training.checkpoint import Progress


def kept_lines(text: str, progress: Progress) -> list[str]:
    """The lines of a metrics.jsonl that a run resumed at `progress` has already accounted for."""
    keep = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # the torn last line of a killed leg
            continue
        if "step" in record:
            if record["step"] < progress.global_step:
                keep.append(line)
        elif record.get("epoch", math.inf) <= progress.epoch:
            keep.append(line)
    return keep


class MetricsLog:
    def __init__(self, run_dir: str | Path, progress: Progress, *, main: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.main = main
        self.file = self.tb = None
        if not main:
            return
        if self.path.exists():
            text = self.path.read_text()
            keep = kept_lines(text, progress)
            if keep != text.splitlines():
                write_text_atomic(self.path, "".join(line + "\n" for line in keep))
        self.file = self.path.open("a")
        from tensorboardX import SummaryWriter  # no TensorFlow: tensorboardX writes the event files

        self.tb = SummaryWriter(
            logdir=str(self.path.parent), purge_step=progress.global_step or None, flush_secs=60
        )

    def _scalars(self, prefix: str, record: dict, step: int) -> None:
        for k, v in record.items():
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and k not in ("step", "epoch"):
                self.tb.add_scalar(f"{prefix}/{k}", float(v), step)

    def step(self, record: dict) -> None:
        if self.main:
            self.file.write(json.dumps(record) + "\n")
            self._scalars("train", record, record["step"])

    def epoch(self, record: dict, step: int) -> None:
        """An epoch's record (`epoch` counted from 1), shown in TensorBoard at global step `step`."""
        if self.main:
            self.file.write(json.dumps(record) + "\n")
            self._scalars("epoch", record, step)

    def flush(self) -> None:
        if self.main:
            self.file.flush()
            self.tb.flush()

    def close(self) -> None:
        if self.main:
            self.file.close()
            self.tb.close()
