#!/usr/bin/env bash
# The real benchmark on the CPU: the cifar10 protocol grid (5 methods x 16/32/64 bits x 3 seeds)
# on frozen MobileNetV2 ImageNet features, feature extraction included, then the MLH ablation
# variants on the same cached features, then the report.
#
#   HASHBENCH_SHARED=../shared bash benchmarks/cifar10_frozen.sh [results-dir] [reports-dir]
set -euo pipefail
shared=${HASHBENCH_SHARED:-../shared}
results=${1:-results/cifar10-frozen}
reports=${2:-reports/cifar10-frozen}
image_size=128
export TORCH_HOME=${TORCH_HOME:-$(mktemp -d)}
mkdir -p "$TORCH_HOME/hub/checkpoints"
ln -sf "$(realpath "$shared/weights/mobilenet_v2-b0353104.pth")" "$TORCH_HOME/hub/checkpoints/"
echo "image size: ${image_size} px (CIFAR-10's 32 px upsampled; MobileNetV2 at 224 px costs 3x more on 2 cores)"
echo "cores: $(nproc); cache: ${HASHBENCH_CACHE:-~/.cache/hashbench}"
common=(--datasets cifar10 --data-root "$shared/data" --frozen-backbone --set "image_size=$image_size"
        --bits 16,32,64 --seeds 0,1,2 --results "$results" --no-progress)
start=$(date +%s)
hashbench run --methods dpsh,hashnet,csq,orthohash,mlh "${common[@]}"
echo "main grid (45 runs, feature extraction included): $(( $(date +%s) - start )) s"
start=$(date +%s)
hashbench run --methods mlh-center,mlh-pairwise,mlh-no-moh,mlh-moe,mlh-moh-unshared "${common[@]}"
echo "ablation grid (45 runs, cached features): $(( $(date +%s) - start )) s"
hashbench report --results "$results" --out "$reports" --notes benchmarks/cifar10_frozen_notes.md
