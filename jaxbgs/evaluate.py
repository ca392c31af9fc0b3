"""Re-score a finished run without retraining: its best checkpoint against the pretrained model on
the held-out test videos (test R^2 with bootstrap CI, both odd-one-out accuracies, R^2 per layer,
noise ceiling).

    python -m jaxbgs.evaluate --run runs/vjepa [--n-boot 10000] [--json]

The run directory's config.json rebuilds the data and the model (same inputs as the run).
Errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import experiments
from jaxbgs.errors import InputError


def evaluate_run(run_dir: str | Path, *, n_boot: int | None = None) -> dict:
    from jaxbgs.train import prepare
    from jaxbgs.trainer import evaluate
    from jaxbgs.training.checkpoint import Checkpoints

    run_dir = Path(run_dir)
    cfg = run_dir / "config.json"
    if not cfg.is_file():
        raise InputError(
            "not a run directory (no config.json)", file=run_dir, fix="pass the --out of a train run"
        )
    if not (run_dir / "best").is_dir():
        raise InputError("the run has no best checkpoint yet", file=run_dir, fix="train at least one epoch")
    exp = experiments.Experiment.load(cfg)
    if n_boot is not None:
        exp = dataclasses.replace(exp, n_boot=n_boot)
    data, _, _, trainer = prepare(exp)
    best, _ = Checkpoints(run_dir).load_best(trainer)
    return evaluate.results(trainer, trainer.init_trainable, best, data, n_boot=exp.n_boot, seed=exp.seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxbgs.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="run directory written by python -m jaxbgs.train")
    p.add_argument("--n-boot", type=int, help="bootstrap resamples (default: the run's)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    try:
        res = evaluate_run(args.run, n_boot=args.n_boot)
    except InputError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            if isinstance(v, float):
                print(f"{k:>36}: {v:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
