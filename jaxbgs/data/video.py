"""Video input: decode clips with PyAV, fix their geometry, and cache every stimulus once as uint8.

    paths = video_paths(VIDEOS_DIR, human)                  # id -> file, all missing ones in one error
    spec = ClipSpec(frames=8, size=224, mode="resize")      # TimeSformer as the BGS authors train it
    cached = open_cache(build_cache(paths, spec, CACHE))    # decodes once, reused while the files stay
    batch = normalize(cached.get(ids), mean, std)           # on device, with the backbone's statistics

Frames are sampled the authors' way, `floor(linspace(0, n-1, T))` over the decoded frame count (both
ends included), or every `stride`-th frame from the start. The cache holds geometry only (sampled,
resized, cropped, uint8); normalisation is per backbone and happens on device (`normalize`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxbgs.errors import InputError
from jaxbgs.files import atomic_path
from jaxbgs.models import preprocess as pp

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi")
MODES = ("crop", "resize")
CACHE_FORMAT = 1
CACHE_ARRAY = "videos.npy"
CACHE_INDEX = "index.json"


# ----------------------------------------------------------------------------------------------- decode


def _unreadable(path: Path, why: object) -> InputError:
    return InputError(
        f"cannot read the video ({why})",
        file=path,
        fix="the file is corrupt, truncated or not a video; re-download or re-encode it "
        "(e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`)",
    )


def decode(path: str | os.PathLike, n_frames: int | None, *, stride: int | None = None) -> np.ndarray:
    """The video's frames as uint8 (T, H, W, 3) RGB, `T = n_frames` sampled by `preprocess.frame_indices`
    (evenly over all decoded frames, both ends included; or every `stride`-th frame from the first).
    `n_frames=None` returns every frame.

    Evenly spaced sampling needs the true decoded frame count (container metadata is often wrong), so
    the whole stream is decoded, but only the chosen frames are converted to RGB; with `stride`
    decoding stops at the last frame needed."""
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(
            "video file not found", file=path, fix="check the path (see video_paths for the expected names)"
        )
    if n_frames is not None and n_frames < 1:
        raise InputError(f"n_frames must be >= 1, got {n_frames}", file=path, where="n_frames")
    if stride is not None and stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}", file=path, where="stride")
    need = None if stride is None or n_frames is None else (n_frames - 1) * stride + 1
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(
                    "the file has no video stream",
                    file=path,
                    fix="use a file with a video track (this one holds only audio, subtitles or data)",
                )
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = []
            for frame in container.decode(stream):
                frames.append(frame)
                if need is not None and len(frames) >= need:
                    break
            if not frames:
                raise InputError(
                    "no frames could be decoded",
                    file=path,
                    fix="the video stream is empty or broken; re-encode or replace the file",
                )
            declared = stream.frames  # the index's count: a little off at times, never by half
            if need is None and declared and len(frames) < declared - max(2, declared // 20):
                raise InputError(
                    f"only {len(frames)} of the {declared} frames the file declares could be decoded",
                    file=path,
                    fix="the file is truncated or damaged (an interrupted download?); fetch or re-encode it",
                )
            if n_frames is not None and stride is None and len(frames) < n_frames:
                log.warning(
                    "%s: %d frames, fewer than the %d asked for; some repeat", path, len(frames), n_frames
                )
            if n_frames is None:
                idx = np.arange(len(frames)) if stride is None else np.arange(0, len(frames), stride)
            else:
                try:
                    idx = pp.frame_indices(len(frames), n_frames, stride=stride)
                except InputError as e:
                    raise InputError(
                        e.problem,
                        file=path,
                        fix="use a smaller stride or fewer frames (or stride=None to spread the frames "
                        "over the whole clip)",
                    ) from None
            out = np.stack([frames[int(i)].to_ndarray(format="rgb24") for i in idx])
    except InputError:
        raise
    except (av.error.FFmpegError, OSError) as e:
        raise _unreadable(path, getattr(e, "strerror", None) or e) from e
    except ValueError as e:  # frames of different sizes in one stream, odd pixel formats
        raise _unreadable(path, e) from e
    return out


# ------------------------------------------------------------------------------------------- geometry


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """What one cached clip looks like: `frames` frames of `size` x `size`.

    mode "crop": short side to `size` (long side truncated to an integer), centre crop (VideoMAE's,
    V-JEPA's and the TimeSformer checkpoint's processors). mode "resize": straight to `size` x `size`,
    aspect ratio not kept (the BGS authors' TimeSformer training). `stride=None` spreads the frames over
    the whole clip; an integer takes every `stride`-th frame from the first."""

    frames: int
    size: int
    mode: str = "crop"
    stride: int | None = None

    def __post_init__(self):
        for name in ("frames", "size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}", where=f"ClipSpec.{name}")
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}", where="ClipSpec.mode", fix=f"use one of {MODES}")
        s = self.stride
        if s is not None and (isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 1):
            raise InputError(f"stride must be a positive integer or None, got {s!r}", where="ClipSpec.stride")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: (None if v is None else v if isinstance(v, str) else int(v)) for k, v in d.items()}

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.frames, self.size, self.size, 3)


def prepare(video: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (spec.frames, spec.size, spec.size, 3): geometry only.

    A clip that already has `spec.frames` frames (the output of `decode(path, spec.frames,
    stride=spec.stride)`) is taken as sampled; any other length is sampled here first. Resizing is
    bilinear with antialiasing (`preprocess.resize`), rounded back to uint8."""
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise InputError(f"expected a (T, H, W, 3) video, got shape {video.shape}", where="prepare")
    if video.shape[0] != spec.frames:
        video = pp.sample_frames(video, spec.frames, stride=spec.stride)
    if spec.mode == "crop":
        out = pp.center_crop(pp.resize_short_side(video, spec.size), spec.size)
    else:
        out = pp.resize(video, spec.size, spec.size)
    return np.clip(np.rint(np.asarray(out, np.float32)), 0, 255).astype(np.uint8)


def normalize(batch, mean, std):
    """uint8 clips (..., 3) -> float32 (x / 255 - mean) / std per channel, as a jax array (on device)."""
    return pp.normalize(batch, mean, std)


# ---------------------------------------------------------------------------------------------- paths


def _names(mapping) -> dict[int, str]:
    if hasattr(mapping, "video_names"):  # HumanData
        mapping = mapping.video_names
    if isinstance(mapping, Mapping):
        return {int(k): str(v) for k, v in mapping.items()}
    if isinstance(mapping, Sequence) and not isinstance(mapping, str):
        return {i: str(n) for i, n in enumerate(mapping)}
    raise InputError(
        f"cannot read video names from a {type(mapping).__name__}",
        where="video_paths",
        fix="pass a dict {video id: file name}, a sequence of names indexed by id, or HumanData",
    )


def video_paths(
    videos_dir: str | os.PathLike, mapping, *, ids: Iterable[int] | None = None
) -> dict[int, Path]:
    """Video id -> file under `videos_dir`, for every id of `mapping` (or only `ids`).

    `mapping` is a dict {id: file name}, a sequence of names indexed by id (`HumanData.video_names`)
    or a `HumanData` itself. A name without a video extension also matches NAME.mp4/.webm/.avi/.mov.
    Files are looked up directly under `videos_dir` first, then anywhere below it (Moments in Time
    keeps its clips in one folder per action). Every missing video is reported in one error."""
    root = Path(videos_dir)
    if not root.is_dir():
        raise InputError(
            "videos directory not found",
            file=root,
            fix="pass the folder holding the Moments in Time clips named in video_mapping.csv",
        )
    names = _names(mapping)
    if ids is not None:
        wanted = [int(i) for i in ids]
        unknown = [i for i in wanted if i not in names]
        if unknown:
            raise InputError(
                f"{len(unknown)} video id(s) are not in the mapping, e.g. {unknown[:5]}",
                where="video_paths",
                fix="ask only for ids of video_mapping.csv",
            )
        names = {i: names[i] for i in wanted}

    below: dict[str, list[Path]] | None = None  # basename -> files anywhere under root, built on demand

    def candidates(name: str) -> list[str]:
        if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
            return [name]
        return [name] + [name + ext for ext in VIDEO_EXTENSIONS]

    found: dict[int, Path] = {}
    missing: list[tuple[int, str]] = []
    for i in sorted(names):
        name = names[i]
        hit = next((root / c for c in candidates(name) if (root / c).is_file()), None)
        if hit is None:
            if below is None:
                below = {}
                for p in sorted(root.rglob("*")):
                    if p.is_file():
                        below.setdefault(p.name, []).append(p)
            for c in candidates(Path(name).name):
                if len(below.get(c, [])) > 1:
                    raise InputError(
                        f"video {i} ({name!r}) matches {len(below[c])} files: "
                        + ", ".join(str(p.relative_to(root)) for p in below[c][:3]),
                        file=root,
                        fix="keep one copy of each video under the videos directory",
                    )
                if below.get(c):
                    hit = below[c][0]
                    break
        if hit is None:
            missing.append((i, name))
        else:
            found[i] = hit
    if missing:
        shown = ", ".join(f"id {i} ({n!r})" for i, n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(
            f"{len(missing)} of {len(names)} videos not found: {shown}{more}",
            file=root,
            fix="put the clips named in video_mapping.csv (the Moments in Time videos, not distributed "
            "with the judgments) in this folder or below it, or point at the folder that holds them",
        )
    return found


# ---------------------------------------------------------------------------------------------- cache


def _source(path: Path) -> dict:
    st = path.stat()
    return {"file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(spec: ClipSpec, ids: Iterable[int]) -> str:
    text = json.dumps({"format": CACHE_FORMAT, "spec": spec.to_dict(), "ids": sorted(int(i) for i in ids)})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stale_reason(path: Path, spec: ClipSpec, paths: dict[int, Path]) -> str | None:
    """None when the cache at `path` is valid for these videos, else why not."""
    try:
        index = json.loads((path / CACHE_INDEX).read_text())
    except (OSError, ValueError) as e:
        return f"unreadable {CACHE_INDEX} ({e})"
    if index.get("format") != CACHE_FORMAT:
        return f"cache format {index.get('format')} (this version writes {CACHE_FORMAT})"
    if index.get("spec") != spec.to_dict():
        return f"clip spec {index.get('spec')} differs from {spec.to_dict()}"
    ids = sorted(paths)
    if index.get("ids") != ids:
        return "the set of videos differs"
    sources = index.get("sources", {})
    for i in ids:
        try:
            now = _source(paths[i])
        except OSError:
            return f"video {i} cannot be read ({paths[i]})"
        if sources.get(str(i)) != now:
            return f"video {i} changed ({paths[i]})"
    try:
        arr = np.load(path / CACHE_ARRAY, mmap_mode="r")
    except (OSError, ValueError) as e:
        return f"unreadable {CACHE_ARRAY} ({e})"
    if arr.dtype != np.uint8 or arr.shape != (len(ids), *spec.shape):
        return f"{CACHE_ARRAY} has {arr.dtype} {arr.shape}, expected uint8 {(len(ids), *spec.shape)}"
    return None


def build_cache(
    video_paths: Mapping[int, str | os.PathLike],
    spec: ClipSpec,
    cache_dir: str | os.PathLike,
    *,
    progress: bool = True,
) -> Path:
    """Decode every video once into `cache_dir/<hash of spec and ids>/` (`videos.npy`, uint8
    (N, frames, size, size, 3) with rows in increasing id order, and `index.json`) and return that
    directory. An existing cache is reused when its spec, ids and source files (name, size, mtime) all
    match; a stale one is rebuilt (logged as a warning). The directory appears only when complete: a
    failure part-way leaves nothing behind (and an older cache untouched)."""
    from tqdm.auto import tqdm

    paths = {int(i): Path(p) for i, p in video_paths.items()}
    if not paths:
        raise InputError("no videos to cache", where="build_cache", fix="pass at least one video id -> file")
    ids = sorted(paths)
    out = Path(cache_dir) / cache_key(spec, ids)
    if out.exists():
        reason = _stale_reason(out, spec, paths)
        if reason is None:
            log.info("reusing video cache %s (%d videos)", out, len(ids))
            return out
        log.warning("video cache %s is stale (%s); rebuilding it", out, reason)
    for i in ids:
        if not paths[i].is_file():
            raise InputError(f"video {i} not found", file=paths[i], fix="check the paths (see video_paths)")
    sources = {str(i): _source(paths[i]) for i in ids}
    with atomic_path(out, directory=True, replace=True) as tmp:
        arr = np.lib.format.open_memmap(
            tmp / CACHE_ARRAY, mode="w+", dtype=np.uint8, shape=(len(ids), *spec.shape)
        )
        bar = tqdm(
            ids,
            desc=f"decoding videos ({spec.frames}x{spec.size}, {spec.mode})",
            unit="video",
            disable=not progress,
        )
        for row, i in enumerate(bar):
            arr[row] = prepare(decode(paths[i], spec.frames, stride=spec.stride), spec)
        bar.close()
        arr.flush()
        del arr
        if any(_source(paths[i]) != sources[str(i)] for i in ids):
            raise InputError(
                "a video changed while the cache was being built",
                file=out,
                fix="run again once the files are stable",
            )
        index = {
            "format": CACHE_FORMAT,
            "spec": spec.to_dict(),
            "ids": ids,
            "shape": [len(ids), *spec.shape],
            "sources": sources,
        }
        (tmp / CACHE_INDEX).write_text(json.dumps(index, indent=1))
    log.info("wrote video cache %s (%d videos)", out, len(ids))
    return out


@dataclasses.dataclass(frozen=True)
class CachedVideos:
    """A built cache, memory-mapped: `array[row]` is the clip of `ids[row]`; `get` looks up by video id."""

    path: Path
    ids: tuple[int, ...]
    spec: ClipSpec
    array: np.ndarray  # uint8 (N, frames, size, size, 3), np.memmap (read-only)

    @property
    def row_of(self) -> dict[int, int]:
        return {i: r for r, i in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, video_id) -> bool:
        return int(video_id) in self.row_of

    def rows(self, ids) -> np.ndarray:
        row_of = self.row_of
        flat = np.asarray(ids).reshape(-1)
        try:
            return np.array([row_of[int(i)] for i in flat], dtype=np.int64).reshape(np.shape(ids))
        except KeyError as e:
            raise InputError(
                f"video id {e.args[0]} is not in the cache "
                f"({len(self.ids)} videos, ids {self.ids[0]}-{self.ids[-1]})",
                file=self.path,
                fix="rebuild the cache with build_cache over the videos you need",
            ) from None

    def get(self, ids) -> np.ndarray:
        """uint8 clips in memory: (frames, size, size, 3) for one id, (B, frames, size, size, 3) for a
        sequence of ids (in the order given)."""
        return np.asarray(self.array[self.rows(ids)])


def open_cache(path: str | os.PathLike) -> CachedVideos:
    """Open a directory written by `build_cache` (its `videos.npy` memory-mapped, not loaded)."""
    path = Path(path)
    if path.is_file() and path.name in (CACHE_INDEX, CACHE_ARRAY):
        path = path.parent
    fix = "pass the directory returned by build_cache, or build it again"
    try:
        index = json.loads((path / CACHE_INDEX).read_text())
    except FileNotFoundError:
        raise InputError(f"not a video cache ({CACHE_INDEX} missing)", file=path, fix=fix) from None
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable {CACHE_INDEX} ({e})", file=path, fix=fix) from None
    try:
        spec = ClipSpec(**index["spec"])
        ids = tuple(int(i) for i in index["ids"])
        array = np.load(path / CACHE_ARRAY, mmap_mode="r")
    except (KeyError, TypeError) as e:
        raise InputError(f"{CACHE_INDEX} lacks {e}", file=path, fix=fix) from None
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable {CACHE_ARRAY} ({e})", file=path, fix=fix) from None
    if array.dtype != np.uint8 or array.shape != (len(ids), *spec.shape):
        raise InputError(
            f"{CACHE_ARRAY} holds {array.dtype} {array.shape}, "
            f"{CACHE_INDEX} says uint8 {(len(ids), *spec.shape)}",
            file=path,
            fix=fix,
        )
    return CachedVideos(path, ids, spec, array)


# ----------------------------------------------------------------------------------------------- tests


_FORMATS = {".mp4": "mp4", ".mov": "mov", ".avi": "avi", ".mkv": "matroska", ".webm": "webm"}


def _encoder(suffix: str) -> str:
    import av

    names = ("libvpx-vp9", "libvpx") if suffix == ".webm" else ("libx264", "h264", "mpeg4")
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # PyAV's error type for a missing codec varies across versions
            continue
    raise InputError(
        f"no encoder for {suffix} files among {names} in this PyAV/FFmpeg build", where="write_test_video"
    )


def write_test_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 8) -> Path:
    """Encode uint8 (T, H, W, 3) RGB frames (H and W even) to `path` with PyAV: H.264 (libx264, near
    lossless) when available, else MPEG-4 Part 2 at a high bit rate; VP9/VP8 for `.webm`. For tests
    and examples. `T = 0` writes a stream without frames (only `.avi` keeps such a stream)."""
    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(
            f"expected uint8 (T, H, W, 3) frames, got {frames.dtype} {frames.shape}", where="frames"
        )
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise InputError(f"frame size {h}x{w} must be even (yuv420p)", where="frames")
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"unknown video extension {path.suffix!r}", file=path, fix=f"use one of {sorted(_FORMATS)}"
        )
    codec = _encoder(path.suffix.lower()) if t else "mpeg4"
    with atomic_path(path) as tmp:
        with av.open(str(tmp), "w", format=fmt) as container:
            if codec in ("libx264", "h264"):
                options = {"crf": "1", "preset": "ultrafast"}
            elif codec.startswith("libvpx"):
                options = {"crf": "4", "b": "0"}
            else:
                options = {"b": "20000000"}
            stream = container.add_stream(codec, rate=fps, options=options)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            container.start_encoding()
            for f in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path
