#!/usr/bin/env bash
#SBATCH --job-name=fdiwn-upscale
#SBATCH --array=0-7
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
# Upscale a folder with a Slurm job array: task K of N upscales share K/N of the inputs (sorted paths,
# every N-th), so the tasks never collide. Outputs that exist are skipped: resubmit to resume after a
# time limit or a node failure.      Usage: sbatch examples/slurm_array.sh INPUT_FOLDER OUTPUT_FOLDER
# Outside Slurm (to try it out) it runs two shards one after the other.
set -euo pipefail
in=${1:?input folder}
out=${2:?output folder}
shard() { "${PYTHON:-python}" -m fdiwn_sr upscale "$in" -o "$out" --scale 4 --shard "$1" ${WEIGHTS:+--weights "$WEIGHTS"}; }
if [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
  shard "$((SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN))/$SLURM_ARRAY_TASK_COUNT"
else
  status=0
  for k in 0 1; do shard "$k/2" || status=$?; done
  exit "$status"
fi
