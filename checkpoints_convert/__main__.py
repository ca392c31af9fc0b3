"""PyTorch <-> Flax checkpoint conversion.

    python -m checkpoints_convert to-flax --arch ARCH --src PATH --dst DIR [--set key=value ...]
    python -m checkpoints_convert to-torch --src DIR --dst DIR [--peft]
    python -m checkpoints_convert check --arch ARCH --src PATH [--frames N --size S] [--json]

Sources are local: a Hugging Face directory, a Hub id already in the local cache, or a release
file (.pt/.pth). Errors print one line on stderr and exit 2 (`--debug` shows the traceback); a full
disk exits 4 naming the path, and nothing half-written is left.
"""

from __future__ import annotations

import argparse
import json
import sys

from jaxbgs.errors import InputError
from jaxbgs.files import disk_full_line
from jaxbgs.models import ARCHS


def parse_sets(pairs: list[str]) -> dict:
    """`key=value` overrides; values are JSON where they parse (numbers, true, null), else strings."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--set {pair!r} is not key=value", fix="e.g. --set dtype=bfloat16")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _to_flax(args) -> dict:
    import dataclasses

    from checkpoints_convert import convert
    from jaxbgs import models

    overrides = parse_sets(args.set)
    fields = {f.name for f in dataclasses.fields(models.family(args.arch).Config)}
    if unknown := sorted(set(overrides) - fields):
        raise InputError(
            f"unknown config key(s) {unknown}", where="--set", fix=f"choose from {sorted(fields)}"
        )
    dst = convert.to_flax(args.arch, args.src, args.dst, **overrides)
    return {"written": str(dst), "arch": args.arch}


def _to_torch(args) -> dict:
    from checkpoints_convert import convert

    dst = convert.to_torch(args.src, args.dst, peft=args.peft)
    return {"written": str(dst), "files": sorted(p.name for p in dst.iterdir())}


def _check(args) -> dict:
    from checkpoints_convert import convert

    return convert.check(args.arch, args.src, frames=args.frames, size=args.size, seed=args.seed)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m checkpoints_convert", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("to-flax", help="PyTorch checkpoint -> Flax checkpoint directory")
    a.add_argument("--arch", required=True, choices=ARCHS)
    a.add_argument("--src", required=True, help="HF directory, cached Hub id, or .pt/.pth release file")
    a.add_argument("--dst", required=True, help="output directory (written atomically)")
    a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    a.set_defaults(func=_to_flax)
    b = sub.add_parser("to-torch", help="Flax checkpoint directory -> PyTorch (merged) or PEFT adapters")
    b.add_argument("--src", required=True)
    b.add_argument("--dst", required=True)
    b.add_argument("--peft", action="store_true", help="write only the LoRA adapters in PEFT format")
    b.set_defaults(func=_to_torch)
    c = sub.add_parser("check", help="PyTorch vs converted Flax on one seeded input, per layer")
    c.add_argument("--arch", required=True, choices=ARCHS)
    c.add_argument("--src", required=True)
    c.add_argument("--frames", type=int, help="frames (default: the checkpoint's own)")
    c.add_argument("--size", type=int, help="square frame size (default: the checkpoint's own)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=_check)
    for s in (a, b, c):
        s.add_argument("--json", action="store_true", help="print one JSON object")
        s.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _print_human(result: dict) -> None:
    if "per_layer_max_abs_diff" in result:
        print(f"{result['arch']}: input {result['input_shapes']}")
        print(
            f"output max |diff| {result['max_abs_diff']:.3e} "
            f"(output max |value| {result['output_max_abs']:.3g})"
        )
        for i, d in enumerate(result["per_layer_max_abs_diff"]):
            print(f"  {'embeddings' if i == 0 else f'block {i - 1}':>10}  {d:.3e}")
    else:
        print(f"wrote {result['written']}" + (f": {', '.join(result['files'])}" if "files" in result else ""))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result = args.func(args)
    except Exception as e:
        line = disk_full_line(e)  # orbax and tensorstore wrap a full disk in their own errors
        if args.debug or not (line or isinstance(e, (InputError, OSError))):
            raise
        print(f"error: {line or e}", file=sys.stderr)
        return 4 if line else 2
    print(json.dumps(result) if args.json else "", end="\n" if args.json else "")
    if not args.json:
        _print_human(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
