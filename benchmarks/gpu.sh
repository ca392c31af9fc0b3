#!/usr/bin/env bash
# Everything in this project that needs a GPU, as one command (issue #5; docs/benchmarks.md):
#   pip install -e ".[cuda,dev,torch]" && bash benchmarks/gpu.sh [OUT_DIR [PART ...]]
# PARTs run in the order given (default: all of them):
#   tests   the GPU-only tests (cuDNN attention, bfloat16) and the sharding tests on the real device;
#   vjepa2 vjepa21 timesformer videomae clip
#           training throughput at the paper's input shape against the PyTorch peer (bf16; with the
#           batch search, each side's fastest remat policy that fits at its largest batch; >= 5 timed
#           blocks per side, MFU), then the input pipeline at that shape against the step's measured
#           need (stall fraction);
#   loop    the real fit loop (input pipeline, metrics, logs) beside the bare step on the same
#           batches: the demo, and V-JEPA 2 ViT-L at 64 x 256 (ratio loop / step, target >= 0.95).
# A part that fails is reported and the next one still runs; the exit status says whether any failed.
# Where GPU time is short, THROUGHPUT="--batch 4" replaces the batch search (--find-batch compiles the
# step once per probed size). PYTHON names the interpreter (default: python3).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu-$(date +%Y%m%d)}"
shift $(($# > 0 ? 1 : 0))
if [ $# -gt 0 ]; then parts=("$@"); else parts=(tests vjepa2 vjepa21 timesformer videomae clip loop); fi
py="${PYTHON:-python3}"
search="${THROUGHPUT:---find-batch}"
declare -A shape=([vjepa2]="64 256" [vjepa21]="16 256" [timesformer]="8 224" [videomae]="16 224" [clip]="8 224")
for part in "${parts[@]}"; do
  [ "$part" = tests ] || [ "$part" = loop ] || [ -n "${shape[$part]:-}" ] || {
    echo "unknown part '$part': choose from tests loop ${!shape[*]}" >&2
    exit 2
  }
done
mkdir -p "$out"
failed=()
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,memory.total --format=csv | tee "$out/nvidia-smi.csv" ||
  echo "nvidia-smi not found: no NVIDIA GPU here" | tee "$out/nvidia-smi.csv"
"$py" -c "import jax, flax, torch, transformers; print('jax', jax.__version__, 'flax', flax.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, jax.devices())" | tee "$out/versions.txt"
for part in "${parts[@]}"; do
  echo "=== $part"
  if [ "$part" = tests ]; then
    "$py" -m pytest -q tests/models/test_gpu.py tests/test_sharding.py 2>&1 | tee "$out/tests.txt" || failed+=(tests)
    continue
  fi
  if [ "$part" = loop ]; then
    "$py" benchmarks/train_throughput.py --loop demo vjepa2 --paper --dtype bfloat16 --remat full \
      --json "$out/loop.json" 2>&1 | tee "$out/loop.md" || failed+=(loop)
    continue
  fi
  # shellcheck disable=SC2086  # $search is a list of options
  "$py" benchmarks/train_throughput.py --paper --arch "$part" --dtype bfloat16 --remat full --reps 5 \
    $search --json "$out/throughput_$part.json" 2>&1 | tee "$out/throughput_$part.md" || failed+=("$part")
  need=$("$py" -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(r['jax']['clips_per_s'])" \
    "$out/throughput_$part.json" 2>/dev/null || echo "")
  read -r frames size <<< "${shape[$part]}"
  "$py" benchmarks/input_pipeline.py --frames "$frames" --size "$size" --videos 100 ${need:+--need "$need"} \
    --json "$out/input_$part.json" 2>&1 | tee "$out/input_$part.md" || failed+=("input_$part")
done
echo "results in $out: copy the tables into docs/benchmarks.md with the device, date and versions"
[ ${#failed[@]} -eq 0 ] || { echo "failed: ${failed[*]}" >&2; exit 1; }
