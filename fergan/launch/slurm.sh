#!/usr/bin/env bash
# Submit a sweep to SLURM as one array job: array task i trains sweep entry i with
# `srun python -m fergan.main ...`, one process per GPU on each of its nodes; the processes of a
# task join through jax.distributed, which reads the SLURM environment. See docs/launch.md.
#
# Usage (from the repository root, on a login node):
#   fergan/launch/slurm.sh --config configs/ck_plus.py --sweep sweeps/variants_x_folds.py \
#       --workdir /shared/runs/ck --nodes 2 --gpus-per-node 8 [--partition gpu] [--time 24:00:00]
#       [--account A] [--job-name fergan] [--cpus-per-task 8] [--max-concurrent M]
#       [--python PATH] [--sbatch-arg ARG]... [--dry-run] [-- flags for fergan.main]
#
# --dry-run prints the sbatch command and the command every array task would run, and submits
# nothing. `--task` is the mode the submitted job runs in (SLURM_ARRAY_TASK_ID picks the entry).
set -euo pipefail

SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
CONFIG="" SWEEP="" WORKDIR="" PARTITION="" ACCOUNT="" TIME="" MAX_CONCURRENT=""
NODES=1 GPUS_PER_NODE=1 CPUS_PER_TASK=8 JOB_NAME=fergan
PYTHON="${PYTHON:-python}"
DRY_RUN=0 TASK=0
SBATCH_ARGS=() EXTRA=()

die() { echo "slurm.sh: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SCRIPT"; }

while (($#)); do
  # --option=value is --option value.
  if [[ "$1" == --?*=* ]]; then set -- "${1%%=*}" "${1#*=}" "${@:2}"; fi
  case "$1" in
    --config) CONFIG="${2:?}"; shift 2 ;;
    --sweep) SWEEP="${2:?}"; shift 2 ;;
    --workdir) WORKDIR="${2:?}"; shift 2 ;;
    --nodes) NODES="${2:?}"; shift 2 ;;
    --gpus-per-node) GPUS_PER_NODE="${2:?}"; shift 2 ;;
    --cpus-per-task) CPUS_PER_TASK="${2:?}"; shift 2 ;;
    --partition) PARTITION="${2:?}"; shift 2 ;;
    --account) ACCOUNT="${2:?}"; shift 2 ;;
    --time) TIME="${2:?}"; shift 2 ;;
    --job-name) JOB_NAME="${2:?}"; shift 2 ;;
    --max-concurrent) MAX_CONCURRENT="${2:?}"; shift 2 ;;
    --python) PYTHON="${2:?}"; shift 2 ;;
    --sbatch-arg) SBATCH_ARGS+=("${2:?}"); shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --task) TASK=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ -n "$CONFIG" && -n "$SWEEP" && -n "$WORKDIR" ]] || die "--config, --sweep and --workdir are required"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer"
[[ "$GPUS_PER_NODE" =~ ^[0-9]+$ ]] || die "--gpus-per-node must be an integer"

# The sweep entry helper checks the sweep against the config and prints entries' commands.
entry() {
  "$PYTHON" -m fergan.launch.sweep_entry --config "$CONFIG" --sweep "$SWEEP" \
    --workdir "$WORKDIR" --python "$PYTHON" "$@" -- "${EXTRA[@]}"
}
SRUN=(srun --kill-on-bad-exit=1)

if ((TASK)); then
  index="${SLURM_ARRAY_TASK_ID:?--task runs inside a SLURM array job (SLURM_ARRAY_TASK_ID)}"
  workdir="$(entry --index "$index" --print workdir)"
  line="$(entry --index "$index")"
  if [[ -f "$workdir/summary.json" ]]; then
    echo "[task $index] $workdir has summary.json: skipped"
    exit 0
  fi
  echo "[task $index] ${SRUN[*]} $line"
  ((DRY_RUN)) && exit 0
  eval "cmd=($line)"  # $line is shell-quoted by sweep_entry (shlex.join).
  exec "${SRUN[@]}" "${cmd[@]}"
fi

count="$(entry --count)"
array="0-$((count - 1))"
[[ -n "$MAX_CONCURRENT" ]] && array+="%$MAX_CONCURRENT"
if ((GPUS_PER_NODE > 0)); then
  # One task (process) per GPU; every task sees the node's GPUs and JAX picks SLURM_LOCALID.
  placement=(--ntasks-per-node="$GPUS_PER_NODE" --gpus-per-node="$GPUS_PER_NODE")
else
  placement=(--ntasks-per-node=1)
fi
SBATCH=(sbatch --job-name="$JOB_NAME" --array="$array" --nodes="$NODES" "${placement[@]}"
  --cpus-per-task="$CPUS_PER_TASK" --chdir="$PWD" --output="$WORKDIR/slurm-%A_%a.out")
[[ -n "$PARTITION" ]] && SBATCH+=(--partition="$PARTITION")
[[ -n "$ACCOUNT" ]] && SBATCH+=(--account="$ACCOUNT")
[[ -n "$TIME" ]] && SBATCH+=(--time="$TIME")
SBATCH+=("${SBATCH_ARGS[@]}" "$SCRIPT" --task --config "$CONFIG" --sweep "$SWEEP"
  --workdir "$WORKDIR" --python "$PYTHON" -- "${EXTRA[@]}")

if ((DRY_RUN)); then
  echo "# $count array tasks. Submit:"
  printf '%q ' "${SBATCH[@]}" | sed 's/ $//'
  echo
  echo "# Array task i runs:"
  commands="$(entry)"
  i=0
  while IFS= read -r line; do
    echo "[task $i] ${SRUN[*]} $line"
    i=$((i + 1))
  done <<<"$commands"
  exit 0
fi

mkdir -p "$WORKDIR"
exec "${SBATCH[@]}"
