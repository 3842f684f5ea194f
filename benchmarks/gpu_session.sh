#!/usr/bin/env bash
# The one prepared script for a lent GPU session (~15 minutes of device time): measures the GPU numbers
# that have never been measured, in priority order, and finishes within 8 minutes on one H100.
#
#     bash benchmarks/gpu_session.sh                 # from the repo root; results under $OUT (default ./gpu_out)
#     DRY_RUN=1 bash benchmarks/gpu_session.sh       # print the steps and their commands, run nothing
#
# Steps (each under `timeout`, capped by the session deadline TOTAL_S, default 480 s; a failing step is
# logged with its exit code and the next one runs):
#   nvidia_smi     15 s   nvidia-smi
#   versions       30 s   gpu_env.py: python, torch, CUDA, cuDNN, GPU, missing imports       -> env.json
#   train_600M    140 s   gpu_train.py --models 600M --seq 4096 (goal: MFU >= 45% in bf16)   -> train_600M.json
#   train_600M_nocompile 90 s   only if train_600M failed: the same without torch.compile   -> train_600M.json
#   train_135M     75 s   gpu_train.py --models 135M --seq 4096                              -> train_135M.json
#   docmask        90 s   gpu_train.py 135M with document masking: none (flash) / flex / dense -> docmask.json
#   checkpoint     70 s   bench_checkpoint.py 600M: DCP sync and async vs full-gather save   -> checkpoint.json
#   codec_fp32     45 s   bench_codec.py --device cuda: Mimi encode/decode throughput only   -> codec_cuda_fp32.json
#   generate       60 s   bench_generate.py on cuda, only if that script has a --device option (today it has none)
# Every step's output goes to $OUT/session.log; $OUT/summary.json (rewritten after each step) holds each
# step's exit code, seconds and limit (124/137: timed out). At most 8 files (the device tool returns 8).
#
# It installs nothing. Python: $PYTHON if set, else the first of .venv/bin/python, python3, python whose
# torch sees a CUDA device (else the first that imports torch; the GPU steps then fail fast, logged).
# It needs torch built with CUDA plus the package's imports; the benchmarks import sodakit from src/
# (PYTHONPATH=src is set here, prepended to any PYTHONPATH you export), so no `pip install -e .` is needed.
# On the lent machines python3 has torch+CUDA, transformers, numpy, safetensors, pyyaml, pyarrow and tqdm but
# (as last listed) not omegaconf (every step imports it), nor soundfile, cffi, pycparser, soxr (the codec
# steps): carry those as wheels (the device tool's notes: `.whl`), install them with
# `pip install --target /tmp/site` and `export PYTHONPATH=/tmp/site` before running this script.
# The `versions` step (benchmarks/gpu_env.py) lists missing imports, so a failing step is explained.

set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
DRY_RUN="${DRY_RUN:-0}"
OUT="${OUT:-./gpu_out}"
TOTAL_S="${TOTAL_S:-480}"
START_S=$SECONDS
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

pick_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
    local c
    for c in .venv/bin/python python3 python; do
        command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
            echo "$c"; return
        fi
    done
    for c in .venv/bin/python python3 python; do
        command -v "$c" >/dev/null 2>&1 || continue
        if "$c" -c "import torch" >/dev/null 2>&1; then echo "$c"; return; fi
    done
    echo python3
}
PY="$(pick_python)"

LOG="$OUT/session.log"
SUMMARY=()
if [ "$DRY_RUN" != 1 ]; then
    mkdir -p "$OUT"
    : >"$LOG"
fi

write_summary() {
    local IFS=,
    printf '{"python": "%s", "total_limit_s": %s, "elapsed_s": %s, "steps": [%s]}\n' \
        "$PY" "$TOTAL_S" "$((SECONDS - START_S))" "${SUMMARY[*]}" >"$OUT/summary.json"
}

# step NAME LIMIT_S COMMAND...: run COMMAND under timeout, capped by what is left of TOTAL_S; sets RC.
step() {
    local name="$1" limit="$2"
    shift 2
    local left=$((TOTAL_S - (SECONDS - START_S) - 5))
    if [ "$DRY_RUN" = 1 ]; then
        echo "DRY_RUN [$name] limit=${limit}s: $*"
        RC=0
        return
    fi
    if [ "$left" -lt 15 ]; then
        echo "== [$name] skipped: only ${left}s left of ${TOTAL_S}s" | tee -a "$LOG"
        SUMMARY+=("{\"step\": \"$name\", \"rc\": null, \"seconds\": 0, \"limit_s\": 0, \"skipped\": true}")
        write_summary
        RC=125
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== [$name] limit ${limit}s: $*" | tee -a "$LOG"
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1
    RC=$?
    local dt=$((SECONDS - t0))
    local note=""
    if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then note=" (timed out)"; fi
    echo "== [$name] exit ${RC}${note} after ${dt}s" | tee -a "$LOG"
    SUMMARY+=("{\"step\": \"$name\", \"rc\": $RC, \"seconds\": $dt, \"limit_s\": $limit}")
    write_summary
}

echo "sodakit GPU session: python=$PY OUT=$OUT TOTAL_S=$TOTAL_S DRY_RUN=$DRY_RUN"
step nvidia_smi 15 nvidia-smi
step versions 30 "$PY" benchmarks/gpu_env.py --json "$OUT/env.json"

# (a) training throughput and MFU at sequence 4096; 600M first: it carries the goal.
step train_600M 140 "$PY" benchmarks/gpu_train.py --models 600M --seq 4096 --steps 15 --warmup 3 \
    --json "$OUT/train_600M.json"
if [ "$RC" != 0 ] || [ "$DRY_RUN" = 1 ]; then
    [ "$DRY_RUN" = 1 ] && echo "(train_600M_nocompile runs only if train_600M fails)"
    step train_600M_nocompile 90 "$PY" benchmarks/gpu_train.py --models 600M --seq 4096 --steps 8 --warmup 2 \
        --no-compile --json "$OUT/train_600M.json"
fi
step train_135M 75 "$PY" benchmarks/gpu_train.py --models 135M --seq 4096 --steps 15 --warmup 3 \
    --json "$OUT/train_135M.json"

# (b) per-document attention: the flash kernel without masking, FlexAttention block masks, the dense mask.
step docmask 90 "$PY" benchmarks/gpu_train.py --models 135M --seq 4096 --steps 8 --warmup 2 \
    --document-masking none flex dense --doc-len 1024 --json "$OUT/docmask.json"

# (c) checkpoint writing: how long the loop waits, DCP (sync, async) against gathering to one writer.
step checkpoint 70 "$PY" benchmarks/bench_checkpoint.py --device cuda --ranks 1 --preset 600M --repeats 1 \
    --json "$OUT/checkpoint.json"

# (d) Mimi encode/decode throughput on the GPU; no offline-codec fit, no WER (slow CPU parts), no flite.
step codec_fp32 45 "$PY" benchmarks/bench_codec.py --device cuda --dtype float32 --skip-fit --skip-wer \
    --synthetic-clips --repeats 3 --json "$OUT/codec_cuda_fp32.json"

# (e) decoding speed on cuda, only if bench_generate.py has a device option (it prints JSON rows to the log).
if grep -q -- '"--device"' benchmarks/bench_generate.py; then
    step generate 60 "$PY" benchmarks/bench_generate.py --device cuda --shapes tiny,135M --batches 1,8 --repeats 2
else
    echo "== [generate] skipped: benchmarks/bench_generate.py has no --device option (CPU only)" \
        | { if [ "$DRY_RUN" = 1 ]; then cat; else tee -a "$LOG"; fi; }
fi

if [ "$DRY_RUN" != 1 ]; then
    write_summary
    echo "done in $((SECONDS - START_S))s; results under $OUT:"
    ls -l "$OUT"
fi
exit 0
