#!/usr/bin/env bash
# One lent GPU session, one command (issue 46): the GPU bench and the default job once, everything into $OUT.
#
# Here, first:  .venv/bin/python bench/gpu_session.py prepare     (writes .gpu/: wheels, data, fp16 MiniLM)
# Then:         run(command="bash bench/gpu_session.sh", carry=[".gpu"], timeout_s=540)
#
# Each part has its own time limit, so a part that hangs or runs long still leaves the others' results; what came
# back says which part stopped where (session.log). Budget: about 8 minutes of command (the machine's start and
# the transfers come on top, out of 15 device minutes). Files in $OUT (at most 8 come back):
#   session.log        everything printed: setup, the bench's table, the job's output, each part's exit status
#   nvidia-smi.txt     the card, its driver and clocks before any work
#   gpu-bench.json     `minbert bench --gpu`: minbert, HF eager, HF sdpa at bert-base's shape, batch 32 x 128
#   job-metrics.json   the default job's metrics.json (per-epoch loss, dev metrics, times, machine, peak memory)
#   job-train.log      the default job's train.log
#   gpu-util.csv       GPU utilisation and memory once a second during the job
set -u
OUT=${OUT:-/tmp/gpu-session-out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
exec > >(tee "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1
START=$(date +%s)
part() { echo; echo "=== $1 ($(( $(date +%s) - START )) s in)"; }
status() { echo "--- $1: exit $2 ($(( $(date +%s) - START )) s in)"; }

part "the card"
timeout 20 nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1; status nvidia-smi $?
head -20 "$OUT/nvidia-smi.txt"

part "setup"
SITE=/tmp/gpu-session-site
if [ -d .gpu/wheels ]; then  # the packages the image lacks, from wheels carried here (no index to reach)
    timeout 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .gpu/wheels/*.whl; status "wheels" $?
fi
export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"  # minbert from this tree, as `pip install -e .`
python3 -c "import minbert" || { timeout 120 python3 -m pip install -q --no-deps --no-build-isolation -e .;
                                  status "pip install -e ." $?; }
python3 -c "import torch, minbert; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
torch.cuda.get_device_name() if torch.cuda.is_available() else '-')"
DATA=/tmp/gpu-session-data MODEL=/tmp/gpu-session-model
if [ -f .gpu/data.tar.xz ]; then mkdir -p "$DATA" && tar -xJf .gpu/data.tar.xz -C "$DATA"; status "data" $?; fi
if [ -d .gpu/model ]; then
    timeout 60 python3 bench/gpu_session.py restore-model .gpu/model "$MODEL"; status "model (fp16 -> fp32)" $?
    cat .gpu/model/ROUNDED.txt
fi

part "the GPU bench: minbert bench --gpu (bert-base shape, batch 32 x 128, bf16 autocast)"
timeout -k 10 150 python3 -m minbert bench --gpu --output "$OUT/gpu-bench.json"; status "bench" $?

part "the default job: minbert train --config configs/multitask.toml device=cuda"
RUNS=/tmp/gpu-session-runs-$START  # a fresh folder each time: a rerun on a warm machine starts anew
JOB=(python3 -m minbert train --config configs/multitask.toml device=cuda "output_dir=$RUNS")
[ -d "$MODEL" ] && JOB+=("model.path=$MODEL")
[ -d "$DATA" ] && export MINBERT_DATA="$DATA"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 > "$OUT/gpu-util.csv" 2>&1 &
SAMPLER=$!
# SIGTERM first: the run stops at its next step boundary and writes what it has (minbert.interrupts)
timeout -k 20 270 "${JOB[@]}"; status "default job" $?
kill "$SAMPLER" 2>/dev/null
RUN=$RUNS/multitask
cp "$RUN/metrics.json" "$OUT/job-metrics.json" 2>/dev/null
cp "$RUN/train.log" "$OUT/job-train.log" 2>/dev/null

part "done"
ls -la "$OUT"
sleep 1  # lets tee write the last lines of session.log
