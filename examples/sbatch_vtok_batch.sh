#!/bin/bash
# Slurm job: CLIP image embeddings of an img2dataset WebDataset, one vtok
# process per task, each taking shards i with i % ntasks == its rank
# (SLURM_PROCID / SLURM_STEP_NUM_TASKS, read by vtok batch). Resubmitting the
# same script after a time limit, a preemption or a crash resumes: shards with
# a .done marker are skipped, the others are redone whole. See docs/BATCH.md.
#
#   sbatch examples/sbatch_vtok_batch.sh
#
#SBATCH --job-name=vtok-batch
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --output=vtok-batch-%j.log
#SBATCH --signal=TERM@60          # SIGTERM a minute before the limit: vtok drops the shard in progress
#SBATCH --requeue                 # resubmitted after a preemption: it resumes

set -euo pipefail

VTOK=${VTOK:-vtok}
MODEL=${MODEL:-/data/models/clip-vit-large-patch14}          # HF folder: config.json, *.safetensors, preprocessor_config.json
SHARDS=${SHARDS:-'/data/laion/{00000..09999}.tar'}            # img2dataset output (quoted: vtok expands the braces)
OUT=${OUT:-/data/laion-emb/clip-l14}                          # shared by every rank

mkdir -p "$OUT"

# One task per rank; each gets SLURM_PROCID, and vtok reads it. The decode
# workers and the encoder threads share the task's CPUs.
srun --cpu-bind=cores "$VTOK" batch \
    --model "$MODEL" \
    --input "$SHARDS" \
    --out "$OUT" \
    --fp16 \
    --batch 64 \
    --threads "${SLURM_CPUS_PER_TASK}" \
    --workers $(( SLURM_CPUS_PER_TASK / 2 )) \
    --caption-key txt \
    --progress json \
    --progress-every 60

# Every shard done? (each rank exits 1 if one of its shards could not be read)
total=$(python3 - "$SHARDS" <<'PY'
import re, sys
m = re.search(r"\{(\d+)\.\.(\d+)\}", sys.argv[1])
print(int(m.group(2)) - int(m.group(1)) + 1 if m else 1)
PY
)
done_=$(find "$OUT" -maxdepth 1 -name '*.done' | wc -l)
echo "vtok batch: $done_ of $total shards done"
