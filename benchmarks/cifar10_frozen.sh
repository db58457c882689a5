#!/usr/bin/env bash
# The published CPU benchmark: frozen MobileNetV2 ImageNet features of CIFAR-10 at 128 px,
# the cifar10 and cifar10-1 protocols, 16/32/64 bits, 3 seeds; then the report.
#
#   HASHBENCH_SHARED=../shared bash benchmarks/cifar10_frozen.sh [stage ...]
#
# The grids and the report's options live in experiments/cifar10-frozen.toml (each grid stage
# is `hashbench run --config experiments/cifar10-frozen.toml --grid <stage>`; `hashbench config
# show --config ...` prints every run's resolved config); $HASHBENCH_SHARED, $RESULTS and
# $REPORTS override its data root, results and report folders.
#
# Stages (default: all, in this order; each skips runs whose record exists, so stages can
# also run in two shells at once):
#   main         dpsh, hashnet, csq, orthohash, mlh with their reference heads, both protocols
#   breadth      thirteen of the fourteen other supervised deep methods (ce ... orthoarc), reference heads, both
#                protocols; breadth-dtsh: DTSH, as long as the other thirteen together
#   label-free   the unsupervised and shallow methods (lsh, pcah, itq, sh, sdh, bihalf, greedyhash-u), both
#                protocols (sdh is shallow but supervised: it lands in the supervised table)
#   equal-head   the same five with one shared head, tag "equal-head-<head>", cifar10 (HEAD=linear by default:
#                on 2 CPU cores the d-d-d MLP head costs ~2 min a run; HEAD=mlp for the larger one); DPSH,
#                whose reference head is the linear one already, with seed 0 alone (120 epochs a run)
#   ablation     the MLH ablation variants, cifar10 protocol
#   convergence  each method's recipe against its schedule stretched x2 (tag "epochs-x2"), cifar10
#   curves       each recipe on its validation curve (1,000 held-out training items, seed 0): 3x the recipe
#                for DPSH and HashNet, 60 epochs for OrthoHash and MLH (a point every 5), then epoch by
#                epoch up to 10 for OrthoHash and MLH and every 2 up to 30 for CSQ (tag "validation-curve-fine");
#                for the methods added later the 32-bit curve each recipe was read from
#   report       hashbench report into reports/cifar10-frozen: the results tables, the notes and every method's
#                gain over ITQ on the same features on README.md; the validation and x2 tables, with the convergence
#                and curve tables of the two stages above (benchmarks/cifar10_frozen_appendix.md opens them), on
#                appendix.md. The two stages rewrite their tables from the records (a run whose record exists is
#                not run again): run them before report after changing either script.
set -euo pipefail
shared=${HASHBENCH_SHARED:-../shared}
results=${RESULTS:-results/cifar10-frozen}
reports=${REPORTS:-reports/cifar10-frozen}
experiment=experiments/cifar10-frozen.toml
export TORCH_HOME=${TORCH_HOME:-$(mktemp -d)}
mkdir -p "$TORCH_HOME/hub/checkpoints"
ln -sf "$(realpath "$shared/weights/mobilenet_v2-b0353104.pth")" "$TORCH_HOME/hub/checkpoints/"
grid=(hashbench run --config "$experiment" --data-root "$shared/data" --results "$results" --grid)
# HEAD=mlp: the equal-head grid with the larger head, under its own tag (the file's is linear)
head=()
if [ "${HEAD:-linear}" != linear ]; then head=(--set "head=$HEAD" --set "tag=equal-head-$HEAD"); fi
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(main breadth breadth-dtsh label-free equal-head ablation convergence curves report)
echo "cores: $(nproc --all); cache: ${HASHBENCH_CACHE:-~/.cache/hashbench}; stages: ${stages[*]}"
for stage in "${stages[@]}"; do
  start=$(date +%s)
  case $stage in
    main|breadth|breadth-dtsh|label-free|ablation) "${grid[@]}" "$stage" ;;
    equal-head) "${grid[@]}" "$stage" ${head[@]+"${head[@]}"} ;;
    convergence)  # seed 0 alone for the two costly checks (CSQ's MLP head, DPSH at 240 epochs)
      check=(python benchmarks/convergence.py --results "$results" --datasets cifar10 --data-root "$shared/data"
             --bits 16,32,64 --set image_size=128)
      "${check[@]}" --methods csq,dpsh --seeds 0 --out "$results/convergence-seed0.md" || true
      "${check[@]}" --methods hashnet,orthohash,mlh --seeds 0,1,2 --out "$results/convergence-3seeds.md" || true ;;
    curves)
      curve=(python benchmarks/validation_curves.py --results "$results" --datasets cifar10 --data-root "$shared/data"
             --set image_size=128)
      "${curve[@]}" --methods dpsh,hashnet --stretch 3 --out "$results/validation-curves-a.md" || true
      "${curve[@]}" --methods orthohash,mlh --epochs 60 --every 5 --out "$results/validation-curves-b.md" || true
      fine=(--tag validation-curve-fine)
      "${curve[@]}" "${fine[@]}" --methods orthohash,mlh --epochs 10 --every 1 --out "$results/validation-curves-c.md" || true
      "${curve[@]}" "${fine[@]}" --methods csq --epochs 30 --every 2 --out "$results/validation-curves-d.md" || true
      # The methods added later, at 32 bits: each line is the curve its recipe was read from (a longer run, or
      # another lr, where the reference recipe had not converged on cached features; see each method's docstring)
      e=(--bits 32 --out)
      "${curve[@]}" --methods dfh --epochs 90 --every 5 "${e[@]}" "$results/validation-curves-e1.md" || true
      "${curve[@]}" --methods dpn --epochs 90 --every 5 --set lr=1e-4 "${e[@]}" "$results/validation-curves-e2.md" || true
      "${curve[@]}" --methods orthoarc --epochs 12 --every 1 "${e[@]}" "$results/validation-curves-e3.md" || true
      "${curve[@]}" --methods bihalf --epochs 300 --every 20 "${e[@]}" "$results/validation-curves-e4.md" || true
      "${curve[@]}" --methods dch --epochs 30 --every 2 "${e[@]}" "$results/validation-curves-e5.md" || true
      "${curve[@]}" --methods dhn,dsh --epochs 120 --every 10 "${e[@]}" "$results/validation-curves-e6.md" || true
      "${curve[@]}" --methods idhn,dtsh --epochs 90 --every 5 "${e[@]}" "$results/validation-curves-e7.md" || true
      "${curve[@]}" --methods dsdh --epochs 90 --every 5 --set lr=0.02 "${e[@]}" "$results/validation-curves-e8.md" || true
      "${curve[@]}" --methods dsdh --epochs 90 --every 10 --set lr=0.2 --tag validation-curve-lr0.2 "${e[@]}" \
        "$results/validation-curves-e9.md" || true
      "${curve[@]}" --methods greedyhash-u --epochs 180 --every 10 --set lr=1e-4 "${e[@]}" \
        "$results/validation-curves-e10.md" || true
      "${curve[@]}" --methods greedyhash-u --epochs 60 --every 10 --tag validation-curve-lr1e-3 "${e[@]}" \
        "$results/validation-curves-e11.md" || true
      "${curve[@]}" --methods ce,adsh --stretch 3 "${e[@]}" "$results/validation-curves-e12.md" || true
      "${curve[@]}" --methods greedyhash,jmlh --epochs 90 --every 5 "${e[@]}" "$results/validation-curves-e13.md" || true
      "${curve[@]}" --methods jmlh --epochs 60 --every 5 --set lr=1e-3 --tag validation-curve-lr1e-3 "${e[@]}" \
        "$results/validation-curves-e14.md" || true ;;
    report)  # each table of the two stages under a blank line, so that no two tables touch
      { cat benchmarks/cifar10_frozen_appendix.md
        printf '\n### Convergence check: mean mAP (ties: expected) at the published recipe and at x2 epochs\n'
        for table in "$results/convergence-seed0.md" "$results/convergence-3seeds.md"; do printf '\n'; cat "$table"; done
        printf '\n### Validation curves: mean mAP of 1,000 held-out training images, seed 0\n'
        while IFS= read -r table; do printf '\n'; cat "$table"; done < <(printf '%s\n' "$results"/validation-curves-*.md |
                                                                      sort -V); } > "$results/appendix-notes.md"
      hashbench report --config "$experiment" --results "$results" --out "$reports" \
        --appendix-notes "$results/appendix-notes.md" ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
  echo "stage $stage: $(( $(date +%s) - start )) s"
done
