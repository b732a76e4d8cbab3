#!/usr/bin/env bash
# Check the TensorRT path on a Jetson or an NVIDIA GPU machine.
#
#   scripts/jetson_check.sh MODEL.onnx IMAGE0 IMAGE1 [fp16|fp32|int8 [CALIBRATION_DIR]]
#
# MODEL.onnx comes from `coarse-loftr export`; IMAGE0 and IMAGE1 are two overlapping photos
# (e.g. consecutive camera frames). Steps:
#   1. TensorRT, pycuda or cuda-python, and a GPU are present;
#   2. `coarse-loftr build-engine` builds an engine (default fp16) and writes its description;
#   3. the engine matches the pair and is compared with ONNX Runtime on the CPU, within the
#      tolerances of scripts/compare_backends.py (fp32: >= 98% of strong matches found both
#      ways, median |confidence difference| <= 1e-3; fp16: >= 90%, <= 1e-2; int8: >= 70%, <= 5e-2);
#   4. Matcher(backend="tensorrt") on the .onnx builds into an engine cache on first use and
#      loads from it the second time, and agrees with ONNX Runtime the same way.
# Exit status 0 when every step passes. Uses the package of this checkout; its dependencies
# (numpy, opencv, onnxruntime, onnx, tensorrt, pycuda or cuda-python) must be installed.
set -euo pipefail

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[[ $# -ge 3 ]] || usage
MODEL=$1 IMAGE0=$2 IMAGE1=$3 PRECISION=${4:-fp16} CALIBRATION=${5:-}
[[ -f $MODEL && -f $IMAGE0 && -f $IMAGE1 ]] || { echo "jetson_check: model or image file missing" >&2; exit 2; }
case $PRECISION in fp32|fp16|int8) ;; *) echo "jetson_check: precision must be fp32, fp16 or int8" >&2; exit 2;; esac
if [[ $PRECISION == int8 && -z $CALIBRATION ]]; then
  echo "jetson_check: int8 needs a CALIBRATION_DIR of images" >&2; exit 2
fi

PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$(dirname "$HERE")${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package first
WORK=$(mktemp -d "${TMPDIR:-/tmp}/jetson_check.XXXXXX")
echo "jetson_check: working in $WORK"

echo "== 1. TensorRT and GPU"
"$PYTHON" - <<'PY'
import sys
from coarse_loftr_ros.backends.tensorrt_backend import tensorrt_available
ok, reason = tensorrt_available()
print(("available: " if ok else "NOT available: ") + reason)
sys.exit(0 if ok else 1)
PY

echo "== 2. build-engine ($PRECISION)"
FLAGS=()
case $PRECISION in
  fp16) FLAGS=(--fp16) ;;
  int8) FLAGS=(--int8 --calibration-images "$CALIBRATION") ;;
esac
START=$(date +%s)
"$PYTHON" -m coarse_loftr_ros.cli build-engine --onnx "$MODEL" --output "$WORK/model.engine" "${FLAGS[@]}"
echo "built in $(( $(date +%s) - START )) s"
test -s "$WORK/model.engine" && test -s "$WORK/model.engine.json"

echo "== 3. engine vs ONNX Runtime"
"$PYTHON" "$HERE/compare_backends.py" "$IMAGE0" "$IMAGE1" --model "$WORK/model.engine" --backend tensorrt \
  --reference-model "$MODEL" --precision "$PRECISION" --json "$WORK/engine_report.json"

if [[ $PRECISION != int8 ]]; then
  echo "== 4. engine cache: first use builds, second use loads"
  for run in first second; do
    START=$(date +%s)
    "$PYTHON" "$HERE/compare_backends.py" "$IMAGE0" "$IMAGE1" --model "$MODEL" --backend tensorrt \
      --reference-model "$MODEL" --precision "$PRECISION" --cache-dir "$WORK/cache" --repeat 5 \
      --json "$WORK/cache_${run}_report.json" > /dev/null
    echo "$run use: $(( $(date +%s) - START )) s, engines cached: $(ls "$WORK/cache" | grep -c '\.engine$')"
  done
  [[ $(ls "$WORK/cache" | grep -c '\.engine$') == 1 ]] || { echo "jetson_check: expected one cached engine" >&2; exit 1; }
fi

echo "jetson_check: PASSED ($PRECISION). Reports: $WORK/*_report.json"
