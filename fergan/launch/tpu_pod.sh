#!/usr/bin/env bash
# Run one config on every worker of a Cloud TPU VM pod slice: `gcloud compute tpus tpu-vm ssh
# --worker=all` starts `python -m fergan.main` on each host at once, with FERGAN_DISTRIBUTED=1 so
# that every process joins jax.distributed (JAX reads the pod's layout from the VM metadata).
# See docs/launch.md.
#
# Usage (from a machine with gcloud; fergan checked out and installed on every worker):
#   fergan/launch/tpu_pod.sh --tpu NAME --zone ZONE --config configs/ck_plus.py \
#       --workdir /mnt/shared/runs/ck [--project P] [--repo-dir fergan] [--python python3]
#       [--dry-run] [-- flags for fergan.main]
#
# TPU_NAME, ZONE and PROJECT_ID are the defaults of --tpu, --zone and --project. --repo-dir is
# the checkout on the workers, relative to the remote home or absolute. --dry-run prints the
# gcloud command (and the command each worker runs) and runs nothing.
set -euo pipefail

SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
TPU="${TPU_NAME:-}" ZONE="${ZONE:-}" PROJECT="${PROJECT_ID:-}"
CONFIG="" WORKDIR="" REPO_DIR="fergan" PYTHON="python3"
DRY_RUN=0
EXTRA=()

die() { echo "tpu_pod.sh: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$SCRIPT"; }

while (($#)); do
  # --option=value is --option value.
  if [[ "$1" == --?*=* ]]; then set -- "${1%%=*}" "${1#*=}" "${@:2}"; fi
  case "$1" in
    --tpu) TPU="${2:?}"; shift 2 ;;
    --zone) ZONE="${2:?}"; shift 2 ;;
    --project) PROJECT="${2:?}"; shift 2 ;;
    --config) CONFIG="${2:?}"; shift 2 ;;
    --workdir) WORKDIR="${2:?}"; shift 2 ;;
    --repo-dir) REPO_DIR="${2:?}"; shift 2 ;;
    --python) PYTHON="${2:?}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[[ -n "$TPU" ]] || die "--tpu (or TPU_NAME) is required"
[[ -n "$ZONE" ]] || die "--zone (or ZONE) is required"
[[ -n "$CONFIG" && -n "$WORKDIR" ]] || die "--config and --workdir are required"

# Quote every word: the command passes through ssh and the remote shell.
run=(env FERGAN_DISTRIBUTED=1 "$PYTHON" -m fergan.main --config "$CONFIG" --workdir "$WORKDIR"
  "${EXTRA[@]}")
remote="cd $(printf '%q' "$REPO_DIR") && $(printf '%q ' "${run[@]}" | sed 's/ $//')"
GCLOUD=(gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE")
[[ -n "$PROJECT" ]] && GCLOUD+=(--project="$PROJECT")
GCLOUD+=(--worker=all --command="$remote")

if ((DRY_RUN)); then
  echo "# Every worker runs:"
  echo "$remote"
  echo "# Command:"
  # All but --command as %q words; --command single-quoted, which reads better.
  printf '%q ' "${GCLOUD[@]:0:${#GCLOUD[@]}-1}"
  printf -- "--command='%s'\n" "${remote//\'/\'\\\'\'}"
  exit 0
fi
exec "${GCLOUD[@]}"
