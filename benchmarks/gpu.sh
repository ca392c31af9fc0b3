#!/usr/bin/env bash
# Everything in this project that needs a GPU, as one command (issue #5; docs/benchmarks.md):
#   pip install -e ".[cuda,dev,torch]" && bash benchmarks/gpu.sh [OUT_DIR]
# 1. the GPU-only tests (cuDNN attention, bfloat16) and the sharding tests on the real device;
# 2. training throughput per backbone at the paper's input shapes against the PyTorch peer
#    (bf16, full remat, largest batch that fits, >= 5 timed blocks per side, MFU);
# 3. the input pipeline at each paper shape against the step's measured need (stall fraction).
# Each family runs separately so a failure in one leaves the others' numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs/gpu-$(date +%Y%m%d)}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,memory.total --format=csv | tee "$out/nvidia-smi.csv"
python -c "import jax, flax, torch, transformers; print('jax', jax.__version__, 'flax', flax.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__, jax.devices())" | tee "$out/versions.txt"
python -m pytest -q tests/models/test_gpu.py tests/test_sharding.py 2>&1 | tee "$out/tests.txt"
declare -A shape=([vjepa2]="64 256" [vjepa21]="16 256" [timesformer]="8 224" [videomae]="16 224" [clip]="8 224")
for arch in vjepa2 vjepa21 timesformer videomae clip; do
  python benchmarks/train_throughput.py --paper --arch "$arch" --dtype bfloat16 --remat full --reps 5 \
    --find-batch --json "$out/throughput_$arch.json" 2>&1 | tee "$out/throughput_$arch.md" || true
  need=$(python -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(r['jax']['clips_per_s'])" \
    "$out/throughput_$arch.json" 2>/dev/null || echo "")
  read -r frames size <<< "${shape[$arch]}"
  python benchmarks/input_pipeline.py --frames "$frames" --size "$size" --videos 100 ${need:+--need "$need"} \
    --json "$out/input_$arch.json" 2>&1 | tee "$out/input_$arch.md" || true
done
echo "results in $out: copy the tables into docs/benchmarks.md with the device, date and versions"
