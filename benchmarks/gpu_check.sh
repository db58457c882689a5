#!/usr/bin/env bash
# GPU check (under 8 minutes on one H100): train_speed figures, eval speed on the GPU path,
# then csq and mlh fine-tuning MobileNetV2 at 224 px on the cifar10 protocol at 64 bits.
#
# The device machine has no ../shared: copy the data and weights into a git-ignored folder
# first and carry it:  mkdir -p .carry && cp ../shared/data/cifar10-jpg.tar.gz \
#   ../shared/weights/mobilenet_v2-b0353104.pth .carry/   (then run with carry=[".carry"]).
set -euo pipefail
carry=${CARRY:-.carry}
export TORCH_HOME=$(mktemp -d) HASHBENCH_CACHE=$(mktemp -d) PYTHONUNBUFFERED=1
mkdir -p "$TORCH_HOME/hub/checkpoints"
cp "$carry/mobilenet_v2-b0353104.pth" "$TORCH_HOME/hub/checkpoints/"
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || export PYTHONPATH=$PWD
epochs=${EPOCHS:-3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 benchmarks/train_speed.py --datasets cifar10 --data-root "$carry/cifar10-jpg.tar.gz" \
    --image-size 224 --batch-size 128 --steps 30 --device cuda
python3 benchmarks/eval_speed.py --device cuda --reference-queries 100
start=$(date +%s)
python3 -m hashbench.cli run --methods csq,mlh --bits 64 --datasets cifar10 --data-root "$carry/cifar10-jpg.tar.gz" \
    --epochs "$epochs" --batch-size 128 --device cuda --results "${OUT:-/tmp}/gpu-results" --no-progress
echo "csq + mlh, ${epochs} epochs each, fine-tuned at 224 px: $(( $(date +%s) - start )) s wall"
