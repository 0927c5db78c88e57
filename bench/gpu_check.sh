#!/usr/bin/env bash
# The device figures of issues 15 and 22 in one run: on a CUDA GPU, vit_b with random weights (the same compute as
# Meta's), synthetic 1654 x 2339 pages (200 dpi A4), a prepared store, 2 loader workers: training steps/s, the
# decoder's share of a step, and a batched decoder call vs one per image, for the page frame and the box-crop frame,
# with the embeddings read by the loaders (cache.device=cpu) and kept on the GPU (cache.device=cuda). Prints the
# card first. About 8 minutes on an H100 (page generation included).
#   bash bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")"
python - <<'PY'
import torch
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device")
PY
for crop in none box; do
  for resident in cpu cuda; do
    python decoder_step.py --model vit_b --device cuda --size 2339 --scans 6 --epochs 4 --batch 8 --crop "$crop" \
      --workers 2 --resident "$resident"
  done
done
