#!/usr/bin/env bash
# Upscale a folder with every GPU of one machine: one torchrun process per GPU, each on its own device
# (LOCAL_RANK) with a disjoint share of the inputs; rank 0 prints the totals. Outputs that exist are
# skipped, so running it again resumes. Without GPUs it runs $NPROC CPU processes (default 2), the cores
# split evenly between them.      Usage: examples/torchrun_upscale.sh INPUT_FOLDER OUTPUT_FOLDER
set -euo pipefail
in=${1:?input folder}
out=${2:?output folder}
py=${PYTHON:-python}
nproc=${NPROC:-$("$py" -c "import torch; print(torch.cuda.device_count() or 2)")}
# "$py -m torch.distributed.run" is the torchrun command; --standalone picks a free local port.
"$py" -m torch.distributed.run --standalone --nproc_per_node "$nproc" \
  -m fdiwn_sr upscale "$in" -o "$out" --scale 4 ${WEIGHTS:+--weights "$WEIGHTS"}
