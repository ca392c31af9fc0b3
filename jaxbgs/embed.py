"""Embed any videos with a trained model: the run's exported (fine-tuned, adapters merged) backbone,
with the run's frame sampling, geometry and normalisation, so the vectors are the ones the run was
scored on.

    python -m jaxbgs.embed --run runs/vjepa --videos clips/ more.mp4 --out emb.npz [--layers]
    python -m jaxbgs.embed --checkpoint DIR --frames 16 --size 256 --videos clips/ --out emb.npz

The .npz holds `names` (the paths as given, directories expanded in sorted order), `embeddings`
(n, d) and, with --layers, `layers` (n, L + 1, d): the pooled embedding after every block.
Errors (missing or unreadable video, no export in the run) print one line and exit 2; nothing is
written unless every video was embedded.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jaxbgs.errors import InputError, count
from jaxbgs.files import atomic_path


def video_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given; directories expanded to their video files (sorted); an empty result is an error."""
    from jaxbgs.data.video import VIDEO_EXTENSIONS

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in VIDEO_EXTENSIONS)
            if not found:
                raise InputError(
                    "no video files in the directory", file=p, fix=f"expected {', '.join(VIDEO_EXTENSIONS)}"
                )
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError("no such file or directory", file=p, where="--videos")
    return out


def load_run(run_dir: str | Path):
    """(model, arch, ClipSpec) of a finished run: its `export/flax` backbone, its clip settings."""
    from checkpoints_convert import core
    from experiments import Experiment
    from jaxbgs.data.video import ClipSpec

    run_dir = Path(run_dir)
    cfg = run_dir / "config.json"
    if not cfg.is_file():
        raise InputError(
            "not a run directory (no config.json)", file=run_dir, fix="pass the --out of a train run"
        )
    export = run_dir / "export" / "flax"
    if not (export / core.CONFIG_FILE).is_file():
        raise InputError(
            "the run has no exported model yet",
            file=export,
            fix=f"let the run finish (python -m jaxbgs.train --resume --out {run_dir})",
        )
    exp = Experiment.load(cfg)
    model, meta = core.load(export)
    return model, meta.arch, ClipSpec(frames=exp.frames, size=exp.size, mode=exp.clip_mode)


def embed_videos(
    model, arch: str, spec, paths: Sequence[Path], *, batch: int = 8, layers: bool = False
) -> dict[str, np.ndarray]:
    """Decode, shape and embed every video (eval mode, fixed padded batches: one compilation), through
    the trainer's own embedding path (same normalisation, compute dtype and layer pooling)."""
    import optax

    from jaxbgs.data import video
    from jaxbgs.trainer.setup import NORMALISATION
    from jaxbgs.trainer.step import Trainer

    mean, std = NORMALISATION[arch]
    trainer = Trainer(model, optax.identity(), mean=mean, std=std, margin=0.0, n_grad=1)
    params = trainer.init_trainable

    embs, lays = [], []
    for s in tqdm(range(0, len(paths), batch), desc="embedding", unit="batch", disable=None):
        chunk = paths[s : s + batch]
        clips = np.stack(
            [video.prepare(video.decode(p, spec.frames, stride=spec.stride), spec) for p in chunk]
        )
        padded = np.concatenate([clips, np.repeat(clips[-1:], batch - len(chunk), axis=0)])
        out = trainer.embed(params, padded, layers=layers)
        e, h = out if layers else (out, None)
        embs.append(np.asarray(e, np.float32)[: len(chunk)])
        if layers:
            lays.append(np.asarray(h, np.float32)[: len(chunk)])
    out = {"names": np.asarray([str(p) for p in paths]), "embeddings": np.concatenate(embs)}
    if layers:
        out["layers"] = np.concatenate(lays)
    return out


def save(result: dict[str, np.ndarray], out: str | Path) -> Path:
    out = Path(out)
    if out.suffix != ".npz":
        raise InputError("the output must be a .npz file", file=out, where="--out")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **result)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jaxbgs.embed", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory written by python -m jaxbgs.train (uses export/flax)")
    src.add_argument("--checkpoint", help="any jaxbgs Flax checkpoint directory (then give --frames, --size)")
    p.add_argument("--videos", nargs="+", required=True, help="video files and/or directories of videos")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--frames", type=count, help="frames per clip (with --checkpoint)")
    p.add_argument("--size", type=count, help="crop size (with --checkpoint)")
    p.add_argument("--mode", default="crop", help="crop or resize (with --checkpoint)")
    p.add_argument("--batch", type=count, default=8)
    p.add_argument("--layers", action="store_true", help="also store the pooled embedding after every block")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    args = p.parse_args(argv)
    try:
        if args.run:
            model, arch, spec = load_run(args.run)
        else:
            from checkpoints_convert import core
            from jaxbgs.data.video import ClipSpec

            if args.frames is None or args.size is None:
                raise InputError("--checkpoint needs --frames and --size", fix="or pass --run DIR")
            model, meta = core.load(args.checkpoint)
            arch, spec = meta.arch, ClipSpec(frames=args.frames, size=args.size, mode=args.mode)
        paths = video_files(args.videos)
        out = save(embed_videos(model, arch, spec, paths, batch=args.batch, layers=args.layers), args.out)
    except InputError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} embeddings to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
