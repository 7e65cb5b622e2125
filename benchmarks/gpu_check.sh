#!/usr/bin/env bash
# The GPU checks of issues 2, 7, 12, 13 and 14 as one prepared script (a lent GPU machine, ~6-8 minutes;
# each part tees its file under OUT_DIR as it finishes, so a cut-off run still returns the first).
# Usage, from the repository root on a CUDA machine with torch, numpy, pyyaml and pyarrow:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# Prints and saves: float32 error of each impl and layout against float64 (is channels-last
# accurate on this GPU, so that it can be the default there?), both impls side by side at
# (C=16,N=5,B=64) and (C=8,N=1,B=64) with bf16, compile, CUDA-graph and channels-last variants, peak GPU
# memory per trial, then a full CIFAR-10-sized search epoch (391 steps) of the fast impl, and a
# 2-epoch search of 100 steps each (the shared CIFAR-10 when ../shared is there, else fake); every
# search algorithm's step on both impls (issue 12), a DARTS-space search epoch (issue 13), and
# the NAS-Bench-1Shot1 supernet's step on each of its three spaces at its defaults (issue 14);
# every algorithm (SDARTS-RS/ADV, GDAS, SNAS, NASP, SGAS, PC-DARTS, GAEA+PC-DARTS included; on
# nb1shot1_* nasbench-1shot1's GDAS and PC-DARTS) on every space: ms/step beside DARTS-V1, float32 against float64 on the GPU, peak GPU memory of one
# trial's step; PC-DARTS's partial-channel supernet; one DARTS-PT projection (darts_pt) timed.
set -euo pipefail
out=${1:-gpu_check_out}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the repository's ray_nas without installing it
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$py benchmarks/equivalence.py --device cuda --channels 16 --cells 5 --batch 64 | tee "$out/equivalence.txt"
$py benchmarks/search_step.py --device cuda --channels 16 --cells 5 --batch 64 --steps 20 --warmup 3 \
  --impl reference fast fast+cl reference+cl fast+bf16 fast+bf16+cl fast+compile fast+cg | tee "$out/c16n5.txt"
$py benchmarks/search_step.py --device cuda --channels 8 --cells 1 --batch 64 --steps 50 --warmup 3 \
  --impl reference fast fast+bf16 fast+cg | tee "$out/c8n1.txt"
$py benchmarks/search_step.py --device cuda --channels 16 --cells 5 --batch 64 --steps 20 --warmup 3 \
  --impl reference fast --algorithm darts_v1 darts_v2 gaea drnas | tee "$out/algorithms.txt"
$py benchmarks/nb1shot1_step.py --device cuda --channels 16 --layers 9 --batch 96 --steps 20 \
  | tee "$out/nb1shot1.txt"
# every algorithm x every space at each space's search size (an algorithm a space refuses is
# listed as skipped): ms/step (median of 5, round-robin), vs darts_v1, float32 vs float64 error of
# the forward and of one step, peak MiB of one trial's step alone on the GPU
$py benchmarks/algorithm_step.py --device cuda --space nb201 --channels 16 --cells 5 --batch 64 \
  --steps 5 --warmup 1 --check --memory | tee "$out/algorithms_nb201.txt"
$py benchmarks/algorithm_step.py --device cuda --space darts --channels 16 --layers 8 --batch 64 \
  --steps 5 --warmup 1 --check --memory | tee "$out/algorithms_darts.txt"
for s in nb1shot1_s1 nb1shot1_s2 nb1shot1_s3; do
  $py benchmarks/algorithm_step.py --device cuda --space "$s" --channels 16 --layers 9 --batch 96 \
    --steps 5 --warmup 1 --check --memory | tee "$out/algorithms_$s.txt"
done
for s in darts nb201; do  # PC-DARTS's own supernet (K = 4, edge normalisation) beside DARTS-V1
  $py benchmarks/pc_darts_step.py --device cuda --space "$s" --steps 5 | tee "$out/pc_darts_$s.txt"
done
$py benchmarks/search_step.py --device cuda --channels 16 --cells 5 --batch 64 --steps 391 --warmup 3 \
  --impl fast fast+cl | tee "$out/epoch.txt"
if [ -f ../shared/tools/cifar10_from_jpeg.py ]; then
  $py ../shared/tools/cifar10_from_jpeg.py "$out/data" >/dev/null
  data=(--set search.dataset=cifar10 --set search.data_root="$out/data")
else  # ../shared does not travel to a lent machine: CIFAR-shaped synthetic data instead
  data=(--set search.dataset=fake)
fi
# the whole search path on the GPU (data, both steps, Hessian, checkpoints); epoch lines show the
# trial's peak GPU memory
$py -m ray_nas.cli search jobs/quickstart.yaml --quiet --set name=gpu_check --set store="$out/runs" \
  "${data[@]}" --set search.channels=16 --set search.cells=5 --set search.epochs=2 \
  --set search.steps_per_epoch=100 --set search.device="${DEVICE:-cuda}" | tee "$out/search.txt"
# the DARTS space (the paper's code's preset: 7 ops, batch 80) at C=16, 8 layers: one epoch of 50
# steps with its Hessian; the epoch line shows the trial's peak GPU memory
$py -m ray_nas.cli search jobs/quickstart.yaml --quiet --set name=gpu_check_darts --set store="$out/runs" \
  "${data[@]}" --set search.space=darts --set search.lr_scheme=ss_darts --set search.channels=16 \
  --set search.layers=8 --set search.epochs=1 --set search.steps_per_epoch=50 \
  --set search.device="${DEVICE:-cuda}" | tee "$out/darts_space.txt"
# one DARTS-PT projection (darts_pt, tune_epochs 1, 20 search-valid batches per candidate) of a
# 1-epoch NB201 search at C=16, N=5: `ray-nas evaluate` prints its seconds ("projected 1/1 ...")
pt=(--set name=gpu_check_pt --set store="$out/runs" --set tracking_uri="sqlite:///$out/mlflow.db"
  --set 'grid.lr_scheme=[nb201]' --set 'grid.seed=[0]' --set keep_checkpoints=true
  --set search.channels=16 --set search.cells=5 --set search.epochs=1 --set search.steps_per_epoch=50
  --set search.hessian_every=0 --set search.device="${DEVICE:-cuda}" --set evaluate.retrain=null
  --set 'criteria=[final, {name: darts_pt, tune_epochs: 1, valid_batches: 20}]')
$py -m ray_nas.cli search jobs/quickstart.yaml --quiet "${data[@]}" "${pt[@]}" | tee "$out/pt_search.txt"
RAY_ADDRESS= $py -m ray_nas.cli evaluate jobs/quickstart.yaml "${data[@]}" "${pt[@]}" | tee "$out/pt.txt"
