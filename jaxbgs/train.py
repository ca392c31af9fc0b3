"""Fine-tune a backbone with behavioral geometric supervision (BGS paper §3.3).

    python -m jaxbgs.train --exp demo                     # runs anywhere, no downloads
    python -m jaxbgs.train --exp vjepa --data DIR --videos DIR --weights PATH [--set key=value ...]
    python -m jaxbgs.train --exp vjepa --out runs/vjepa --resume
    python -m jaxbgs.train --list
    python -m jaxbgs.train --exp socialfusion-demo        # SocialFusion (second paper), no downloads
    python -m jaxbgs.train --exp vjepa ... --set mesh.data=4 --set mesh.fsdp=2      # one node, 8 GPUs
    python -m jaxbgs.train --exp vjepa ... --coordinator HOST:PORT --num-processes N --process-id I

Several hosts: start the same command on each (or under SLURM / Open MPI, which JAX detects);
every process reads its own rows of each batch, checkpoints are written from all of them, logs
and files from process 0.

The run directory holds config.json, metrics.jsonl and TensorBoard event files, checkpoints/,
best/, embeddings.npz, export/ (a jaxbgs Flax checkpoint and its PyTorch export) and results.json,
written last. A kill at any instant (SIGKILL included) leaves the last checkpoint whole, and
`--resume` continues exactly where it stood, redoing an interrupted evaluation or export; the
directory is locked while a run trains in it. Exit status: 0 finished (or stopped at max_steps), 2
bad input (one line), 3 out of device memory (what to turn down), 4 disk full (the path), 128 + N
stopped by signal N after a checkpoint (143: SIGTERM, 130: Ctrl-C).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
from pathlib import Path

import jax
import numpy as np

import experiments
from experiments.socialfusion import SocialFusionExperiment
from jaxbgs import sharding
from jaxbgs.errors import InputError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m jaxbgs.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--exp", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument("--data", help="judgments in the released format")
    p.add_argument("--videos", help="directory holding the videos named in the mapping")
    p.add_argument("--weights", help="HF directory, HF cache id, release file or jaxbgs Flax checkpoint")
    p.add_argument("--out", help="run directory (default runs/<exp>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument(
        "--resume", action="store_true", help="continue from the run directory's latest checkpoint"
    )
    p.add_argument("--coordinator", help="multi-host: address:port of process 0 (or JAX_COORDINATOR_ADDRESS)")
    p.add_argument("--num-processes", type=int, help="multi-host: process count (or JAX_NUM_PROCESSES)")
    p.add_argument("--process-id", type=int, help="multi-host: this process's index (or JAX_PROCESS_ID)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def resolve(args) -> experiments.Experiment:
    if not args.exp:
        raise InputError("--exp is required", fix="pick one from: python -m jaxbgs.train --list")
    exp = experiments.override(experiments.get(args.exp), experiments.parse_sets(args.set))
    given = {k: getattr(args, k) for k in ("data", "videos", "weights", "out") if getattr(args, k)}
    if isinstance(exp, SocialFusionExperiment) and "videos" in given:
        raise InputError(
            "SocialFusion takes images, not --videos",
            where=f"--exp {exp.name}",
            fix="pass --data ROOT with the five datasets (see experiments/socialfusion.py)",
        )
    return dataclasses.replace(exp, **given)


def distill_targets(exp: experiments.Experiment, data):
    """Language-distillation control: odd ones and RSA distances from caption embeddings, not people."""
    from jaxbgs import losses
    from jaxbgs.data.matrices import PairMatrix
    from jaxbgs.eval.language import FlaxSentenceEncoder, caption_embeddings

    if not data.captions:
        raise InputError(
            "loss='distill' needs captions", where=f"--exp {exp.name}", fix="use data with captions"
        )
    ids = np.asarray(sorted(data.captions))
    emb = caption_embeddings(FlaxSentenceEncoder(exp.distill_model), data.captions, ids, mode="first")
    full = np.zeros((ids.max() + 1, emb.shape[1]), np.float32)
    full[ids] = emb
    train = losses.caption_trials(data.train, full)
    dist = losses.caption_distance_matrix(full[data.train_ids])
    counts = np.ones((len(data.train_ids),) * 2, np.int64) - np.eye(len(data.train_ids), dtype=np.int64)
    # The caption similarity 1 - d as a share of 1000 votes, so the RSA term reads it like human data.
    together = np.rint(np.clip(1 - dist, 0, 1) * 1000).astype(np.int64) * counts
    matrix = PairMatrix(data.train_ids, counts * 1000, together)
    return dataclasses.replace(data, train=train, train_matrix=matrix)


def base_weights(exp: experiments.Experiment):
    """Where the backbone comes from: `exp.weights`, or the demo's encoder (pretrained once, cached)."""
    if exp.name == "demo":
        from jaxbgs.trainer import demo

        return demo.pretrain(exp, Path(exp.cache))
    return exp.weights


def prepare(exp: experiments.Experiment):
    """(data, model, meta, trainer) for `exp`: what both training and re-scoring a run need."""
    from jaxbgs.trainer import setup
    from jaxbgs.trainer.step import Trainer, make_optimizer
    from jaxbgs.trainer.task import epoch_plan

    if exp.name == "demo":
        from jaxbgs.trainer import demo

        data, _ = demo.demo_data(exp)
    else:
        data = setup.load_real_data(exp)
    weights = base_weights(exp)
    if exp.loss == "distill":
        data = distill_targets(exp, data)
    model, meta = setup.build_model(exp, weights)
    mean, std = setup.NORMALISATION[exp.arch]
    total = exp.decay_steps
    if exp.lr_schedule != "constant" and not total:
        total = exp.epochs * len(epoch_plan(exp, data, 0))
    optimizer = make_optimizer(
        exp.lr, exp.weight_decay, schedule=exp.lr_schedule, warmup_steps=exp.warmup_steps, total_steps=total
    )
    trainer = Trainer(
        model, optimizer, mean=mean, std=std, margin=exp.margin,
        n_grad=exp.rsa_grad_videos, augment=exp.augment, mesh=sharding.make_mesh(exp.mesh), seed=exp.seed,
    )  # fmt: skip
    return data, model, meta, trainer


def run(exp: experiments.Experiment, *, resume: bool = False) -> dict:
    """Train `exp` into its run directory, then evaluate and export; with `resume`, continue from
    the last checkpoint (or redo an interrupted evaluation and export; a finished run is left as is)."""
    from jaxbgs import lora
    from jaxbgs.trainer import task
    from jaxbgs.training.loop import fit
    from jaxbgs.training.run import RunDir

    log = sharding.main_print
    with RunDir(exp.run_dir, exp.to_json(), resume=resume) as run_dir:
        if run_dir.finished:
            log(f"{run_dir.path}: the run is finished (results.json); nothing to do")
            return run_dir.results()
        data, model, meta, trainer = prepare(exp)
        run_dir.write_config()
        log(f"{exp.name}: {lora.summary(model)}")
        mesh = trainer.mesh
        log(f"mesh {dict(mesh.shape)} over {mesh.devices.size} device(s), {jax.process_count()} process(es)")
        log(
            f"train {len(data.train_ids)} videos / {len(data.train)} trials, val {len(data.val_ids)} / "
            f"{len(data.val)}, test {len(data.test_ids)} / {len(data.test)}"
        )
        if data.excluded:
            log(data.excluded)
        bgs = task.BGSTask(exp, data, trainer)
        if not bgs.validates:
            log(
                f"validation split has {task.n_validation_pairs(data)} judged pair(s) (< 3): no validation, "
                "no early stopping, no plateau LR; the last epoch is kept as the best"
            )
        fitted = fit(trainer, bgs, run_dir.path, task.fit_config(exp), resume=run_dir.resume)
        if not fitted.progress.done:
            log(
                f"stopped at step {fitted.progress.global_step}; continue with --exp {exp.name} --resume "
                f"--out {exp.run_dir}"
            )
            return {"stopped_at_step": fitted.progress.global_step, "signal": fitted.signal}
        return finish(exp, run_dir.path, data, meta, trainer, fitted.progress)


def finish(exp: experiments.Experiment, run_dir: Path, data, meta, trainer, progress) -> dict:
    """Evaluation and export of a trained run; every file is replaced atomically and results.json
    comes last, so an interrupted finish is simply done again by `--resume`."""
    from jaxbgs.files import atomic_path, write_text_atomic
    from jaxbgs.trainer import evaluate
    from jaxbgs.training import faults
    from jaxbgs.training.checkpoint import Checkpoints

    best, best_progress = Checkpoints(run_dir).load_best(trainer)
    faults.point("evaluating")
    emb: dict = {}
    res = evaluate.results(
        trainer, trainer.init_trainable, best, data, n_boot=exp.n_boot, seed=exp.seed, keep=emb
    )
    res |= {
        "best_epoch": best_progress.best_epoch + 1,  # counted from 1, as the log and metrics.jsonl count
        "best_val": best_progress.to_json()["best"],
        "epochs_run": progress.epoch,
    }
    all_videos = every_video(trainer, best, data)  # for probes, which fit on training videos
    merged = trainer.merged_model(best)  # collective: gathers parameters split across hosts
    if sharding.is_main_process():
        res |= export(merged, meta, run_dir)
        weights = base_weights(exp)
        if weights is not None and Path(weights).exists():  # a path: absolute, readable from anywhere
            weights = Path(weights).absolute()
        res["base_weights"] = str(weights) if weights is not None else None  # else a Hub id
        emb |= {"test_items": data.test.items, "test_odd": data.test.odd, **all_videos}
        if data.captions:  # one caption per test video, for tables a person reads
            emb["captions"] = np.array([data.captions.get(int(i), [""])[0] for i in emb["ids"]])
        with atomic_path(run_dir / "embeddings.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **emb)  # test videos (per layer, trials, captions); all_*: every video, final
        write_text_atomic(run_dir / "results.json", json.dumps(res, indent=2) + "\n")
    return res


def every_video(trainer, finetuned, data) -> dict:
    """Final embeddings of every train, val and test video, pretrained and fine-tuned, with each
    video's split (and the per-video ratings when the data has them: the demo's latents)."""
    from jaxbgs.trainer.task import embed_all

    parts = {"train": data.train_ids, "val": data.val_ids, "test": data.test_ids}
    ids = np.concatenate(list(parts.values())).astype(np.int64)
    out = {
        "all_ids": ids,
        "all_split": np.concatenate([np.full(len(v), k) for k, v in parts.items()]),
        "all_pretrained": embed_all(trainer, trainer.init_trainable, data.clips, ids),
        "all_finetuned": embed_all(trainer, finetuned, data.clips, ids),
    }
    if data.ratings is not None:
        names, values = data.ratings
        out |= {"rating_names": np.array(names), "ratings": values[ids]}
    return out


def export(model, meta, run_dir: Path) -> dict:
    """The best model as a jaxbgs Flax checkpoint, and in PyTorch when torch is installed, written
    together into export/ (one rename: an export is whole or absent, and a redo replaces it)."""
    from checkpoints_convert import convert, core
    from jaxbgs.files import atomic_path
    from jaxbgs.training import faults

    dst = run_dir / "export"
    try:
        import torch  # noqa: F401
    except ImportError:
        torch = None
    with atomic_path(dst, directory=True, replace=True) as tmp:
        core.save(model, tmp / "flax", meta)
        faults.point("exporting")
        if torch is not None:
            convert.to_torch(tmp / "flax", tmp / "torch")
    return {"export_flax": str(dst / "flax"), "export_torch": str(dst / "torch") if torch else None}


def print_list() -> None:
    for name in experiments.all_names():
        print(f"{name:<28} {experiments.get(name).description}")


def memory_hint(exp) -> str:
    """The settings that size a step's activations, as they stand, for an out-of-memory message."""
    if isinstance(exp, SocialFusionExperiment):
        knobs = [f"batch_size={exp.batch_size}"]
    elif exp.mode == "video":
        knobs = [f"video_batch={exp.video_batch}"]
    else:  # a triplet step embeds 3 clips per trial; an RSA step embeds rsa_videos clips
        knobs = [f"batch_trials={exp.batch_trials} (x3 clips)", f"rsa_videos={exp.rsa_videos}"]
    knobs = ["lower " + " or ".join(knobs)]
    if exp.remat != "full":
        knobs.append(f"remat={exp.remat} -> full")
    if exp.dtype == "float32":
        knobs.append("dtype=float32 -> bfloat16")
    if jax.device_count() > 1 and exp.mesh_fsdp == 1:
        knobs.append("split the frozen weights with mesh.fsdp")
    return (
        "; ".join(knobs) + " (with --set; `benchmarks/train_throughput.py --find-batch` finds the largest "
        f"batch that fits). --resume takes a new remat; other changes start {exp.run_dir} over if it holds "
        "no checkpoint yet, else need another --out"
    )


def main(argv: list[str] | None = None) -> int:
    from jaxbgs.files import disk_full_line
    from jaxbgs.training.run import EXIT_DISK, EXIT_ERROR, EXIT_OOM, exit_status

    args = parser().parse_args(argv)
    if args.list:
        print_list()
        return 0
    exp = None
    try:
        sharding.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
        exp = resolve(args)
        if isinstance(exp, SocialFusionExperiment):
            from jaxbgs.socialfusion import train as socialfusion

            res = socialfusion.run(exp, resume=args.resume)
            print(socialfusion.summary(res))
        else:
            res = run(exp, resume=args.resume)
    except InputError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except jax.errors.JaxRuntimeError as e:
        if args.debug or exp is None or "RESOURCE_EXHAUSTED" not in str(e):
            raise
        print(
            f"error: out of device memory ({str(e).splitlines()[0]}). Fix: {memory_hint(exp)}",
            file=sys.stderr,
        )
        return EXIT_OOM
    except Exception as e:  # a full disk, whoever noticed it (orbax, tensorstore, a plain write)
        if args.debug or (line := disk_full_line(e)) is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return EXIT_DISK
    if res.get("signal") is not None:
        name = signal.Signals(res["signal"]).name
        print(
            f"stopped by {name} after a checkpoint: exit status {exit_status(res['signal'])}", file=sys.stderr
        )
        return exit_status(res["signal"])
    keys = ("test_r2_pretrained", "test_r2_finetuned", "noise_ceiling", "ooo_accuracy_finetuned")
    for k in keys:
        if k in res:
            print(f"{k:>24}: {res[k]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
