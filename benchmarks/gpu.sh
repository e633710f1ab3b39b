#!/usr/bin/env bash
# The GPU tables: the same benchmarks on a CUDA machine (written to $OUT, or docs/ by default).
#
#     bash benchmarks/gpu.sh [OUT_DIR]
#
# Needs torch with CUDA, captum and monai importable (wheels in .whl/ are installed to
# /tmp/site first where present) and the cached inputs in benchmarks/.cache (made by any CPU run
# of benchmarks/occlusion.py): the sample brain needs SimpleITK, which a GPU box may lack.
set -euo pipefail
out=${1:-docs}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, captum, monai; print('torch', torch.__version__, 'captum', captum.__version__, 'monai', monai.__version__, 'cuda', torch.cuda.is_available())"
# the GPU-only tests (a run on the GPU gives the CPU's map); --noconftest: no real-data fixtures here
python3 -m pytest -q -p no:cacheprovider --noconftest --tb=short -W ignore tests/test_gradient_tuning.py >"$out/gpu_tests.txt" 2>&1 || true
tail -3 "$out/gpu_tests.txt"
python3 benchmarks/gradients.py --device cuda --repeats 3 --out "$out/benchmarks_gradients_gpu.json"
python3 benchmarks/occlusion.py --device cuda --whole --out "$out/benchmarks_occlusion_gpu.json"
