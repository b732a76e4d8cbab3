"""The ROS 2 package around the code: package.xml, CMakeLists.txt, the message, the node
entry point and the launch file, checked with real tools where they can run here.

msg/MatchArray.msg goes through ROS 2's own IDL tools (rosidl_adapter converts it to IDL,
rosidl_parser parses that), in a subprocess of the first interpreter that has them: this one
(the ROS 2 venv of scripts/setup_ros2_venv.sh has them, from the ros-kilted-rosidl-* wheels),
else Debian's /usr/bin/python3 (apt-get install python3-rosidl python3-empy python3-lark); the
tests skip when neither has them.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")

ROS_ONLY_MODULES = ("rclpy", "message_filters", "cv_bridge", "diagnostic_updater", "diagnostic_msgs",
                    "sensor_msgs", "std_msgs", "rcl_interfaces", "launch", "launch_ros")


def ros_available() -> bool:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return False
    return True


# ----- package.xml -----


@pytest.fixture(scope="module")
def package():
    catkin_pkg = pytest.importorskip("catkin_pkg.package")
    return catkin_pkg.parse_package(str(REPO / "package.xml"))


def test_package_xml_is_valid_format_3(package):
    package.validate()  # raises InvalidPackage with the problems
    assert package.package_format == 3
    assert package.name == "coarse_loftr_ros"
    assert package.get_build_type() == "ament_cmake"
    assert [g.name for g in package.member_of_groups] == ["rosidl_interface_packages"]


def test_package_xml_dependencies(package):
    buildtool = {d.name for d in package.buildtool_depends}
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= buildtool
    exec_depends = {d.name for d in package.exec_depends}
    assert {
        "rosidl_default_runtime", "rclpy", "std_msgs", "sensor_msgs", "diagnostic_msgs",
        "python3-numpy", "python3-opencv", "launch_ros",
    } <= exec_depends
    # Not on PyPI, and the node needs neither (own stereo pairing and diagnostics).
    assert not {"message_filters", "diagnostic_updater"} & exec_depends
    # The message uses std_msgs/Header and sensor_msgs/CameraInfo: both at build time too.
    assert {"std_msgs", "sensor_msgs"} <= {d.name for d in package.build_depends}
    assert {"std_msgs", "sensor_msgs"} <= {d.name for d in package.build_export_depends}


def test_package_xml_lists_every_ros_import_of_the_node(package):
    depends = {d.name for d in package.exec_depends}
    tree = ast.parse((REPO / "coarse_loftr_ros" / "ros" / "node.py").read_text())
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom)) and (not isinstance(node, ast.ImportFrom) or node.level == 0)
        for alias in node.names
    }
    ros_imports = imported & set(ROS_ONLY_MODULES)
    assert ros_imports and ros_imports <= depends, ros_imports - depends


def test_versions_agree(package):
    import coarse_loftr_ros

    setup_text = (REPO / "setup.py").read_text()
    assert f'version="{package.version}"' in setup_text
    assert coarse_loftr_ros.__version__ == package.version


# ----- CMakeLists.txt -----


@pytest.fixture(scope="module")
def cmake() -> str:
    # Drop comments so that the checks see commands only.
    return "\n".join(line.split("#", 1)[0] for line in (REPO / "CMakeLists.txt").read_text().splitlines())


def test_cmake_generates_every_message(cmake):
    generated = re.search(r"rosidl_generate_interfaces\((.*?)\)", cmake, re.S).group(1)
    messages = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "msg").glob("*.msg"))
    assert messages and all(f'"{m}"' in generated for m in messages)
    assert "DEPENDENCIES std_msgs sensor_msgs" in generated
    assert "find_package(sensor_msgs REQUIRED)" in cmake


def test_cmake_installs_python_packages_after_the_interfaces(cmake):
    # ament_python_install_package(coarse_loftr_ros) collides with the generated package
    # (rosidl_python issue 141): install(DIRECTORY) after rosidl_generate_interfaces.
    assert "ament_python_install_package" not in cmake
    install = re.search(r"install\(\s*DIRECTORY coarse_loftr_ros coarse_loftr_train\s+DESTINATION \$\{PYTHON_INSTALL_DIR\}", cmake)
    assert install and install.start() > cmake.index("rosidl_generate_interfaces(")
    assert "find_package(ament_cmake_python REQUIRED)" in cmake  # defines PYTHON_INSTALL_DIR
    assert not (REPO / "coarse_loftr_ros" / "msg").exists()  # the generated msg/ subpackage must not be shadowed


def test_cmake_installs_the_executable_launch_and_config(cmake):
    assert "install(PROGRAMS scripts/matcher_node DESTINATION lib/${PROJECT_NAME})" in cmake
    assert "install(DIRECTORY launch config DESTINATION share/${PROJECT_NAME})" in cmake
    assert cmake.rstrip().endswith("ament_package()")
    for test in re.findall(r"add_launch_test\((\S+)", cmake):
        assert (REPO / test).is_file()


# ----- the node entry points without ROS -----


def test_matcher_node_script_is_executable_python():
    script = REPO / "scripts" / "matcher_node"
    assert os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/usr/bin/env python3\n")


@pytest.mark.skipif(ros_available(), reason="rclpy is installed: the node would start")
@pytest.mark.parametrize("command", [["-m", "coarse_loftr_ros.node"], [str(REPO / "scripts" / "matcher_node")]])
def test_node_without_rclpy_exits_with_one_line_naming_rclpy(command):
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run([sys.executable, *command], capture_output=True, text=True, env=environment, timeout=120)
    assert completed.returncode == 1
    assert completed.stdout == ""
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and "rclpy" in lines[0] and "source /opt/ros" in lines[0], completed.stderr


def test_only_node_py_imports_ros():
    offenders = []
    for path in sorted((REPO / "coarse_loftr_ros").rglob("*.py")):
        if path == REPO / "coarse_loftr_ros" / "ros" / "node.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ROS_ONLY_MODULES]
    assert not offenders


# ----- launch file -----


def test_launch_file_arguments_and_profiles():
    source = (REPO / "launch" / "matcher.launch.py").read_text()
    tree = ast.parse(source)
    arguments = next(
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ARGUMENTS" for t in node.targets)
    )
    declared = {element.elts[0].value: element.elts[1].value for element in arguments.elts}
    assert {"mode", "namespace", "model", "backend", "params_file", "profile", "image0", "image1", "image",
            "image_transport", "use_sim_time"} <= set(declared)
    assert (REPO / "config" / f"{declared['profile']}.yaml").is_file()
    assert "def generate_launch_description" in source
    for example in ("mode:=stereo", "mode:=sequence", "ros2 bag play"):
        assert example in source


# ----- the message through ROS 2's IDL tools -----

_ROSIDL_SCRIPT = r"""
import json, pathlib, sys
from rosidl_adapter.msg import convert_msg_to_idl
from rosidl_parser.definition import IdlLocator, Message, NamespacedType, BasicType, UnboundedSequence, UnboundedString
from rosidl_parser.parser import parse_idl_file

package_dir, output_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
idl = convert_msg_to_idl(package_dir, "coarse_loftr_ros", pathlib.Path("msg/MatchArray.msg"), output_dir)
message = parse_idl_file(IdlLocator(output_dir, pathlib.Path(idl.name))).content.get_elements_of_type(Message)[0]

def describe(t):
    if isinstance(t, NamespacedType):
        return "/".join(t.namespaced_name())
    if isinstance(t, BasicType):
        return t.typename
    if isinstance(t, UnboundedSequence):
        return "sequence<" + describe(t.value_type) + ">"
    if isinstance(t, UnboundedString):
        return "string"
    return type(t).__name__

members = []
for member in message.structure.members:
    comments = [a.value["text"] for a in member.annotations if a.name == "verbatim" and a.value.get("language") == "comment"]
    members.append({"name": member.name, "type": describe(member.type), "comment": " ".join(comments)})
print("JSON:" + json.dumps({"name": "/".join(message.structure.namespaced_type.namespaced_name()), "members": members}))
"""


def _python_with_rosidl() -> str | None:
    """The first interpreter that imports ROS 2's IDL tools: this one, else Debian's."""
    for python in (sys.executable, str(SYSTEM_PYTHON)):
        if Path(python).exists() and subprocess.run([python, "-c", "import rosidl_adapter, rosidl_parser, em, lark"],
                                                    capture_output=True, timeout=60).returncode == 0:
            return python
    return None


@pytest.fixture(scope="module")
def parsed_message(tmp_path_factory):
    python = _python_with_rosidl()
    if python is None:
        pytest.skip("ROS 2's IDL tools are absent: run the tests after `source .ros2/setup.bash` "
                    "(bash scripts/setup_ros2_venv.sh), or apt-get install -y python3-rosidl python3-empy python3-lark")
    output = tmp_path_factory.mktemp("idl")
    completed = subprocess.run(
        [python, "-c", _ROSIDL_SCRIPT, str(REPO), str(output)],
        capture_output=True, text=True, timeout=120, env={"PATH": os.environ.get("PATH", "/usr/bin")},
    )
    assert completed.returncode == 0, completed.stderr
    line = next(line for line in completed.stdout.splitlines() if line.startswith("JSON:"))
    return json.loads(line[len("JSON:"):])


def test_message_parses_with_rosidl(parsed_message):
    assert parsed_message["name"] == "coarse_loftr_ros/msg/MatchArray"
    types = {m["name"]: m["type"] for m in parsed_message["members"]}
    assert types == {
        "header": "std_msgs/msg/Header",
        "header0": "std_msgs/msg/Header",
        "header1": "std_msgs/msg/Header",
        "image0_width": "uint32",
        "image0_height": "uint32",
        "image1_width": "uint32",
        "image1_height": "uint32",
        "grid_width": "uint32",
        "grid_height": "uint32",
        "keypoints0": "sequence<float>",
        "keypoints1": "sequence<float>",
        "confidence": "sequence<float>",
        "cells0": "sequence<int32>",
        "cells1": "sequence<int32>",
        "model": "string",
        "backend": "string",
        "latency_ms": "float",
        "camera_info0": "sensor_msgs/msg/CameraInfo",
        "camera_info1": "sensor_msgs/msg/CameraInfo",
    }


def test_every_message_field_has_its_own_comment(parsed_message):
    missing = [m["name"] for m in parsed_message["members"] if not m["comment"].strip()]
    assert not missing
    comments = {m["name"]: m["comment"] for m in parsed_message["members"]}
    assert "pixels" in comments["keypoints0"] and "milliseconds" in comments["latency_ms"]


def test_rosidl_and_rosbags_agree_on_the_fields(parsed_message):
    from coarse_loftr_ros.ros.match_array import MATCH_ARRAY_TYPENAME, match_array_typestore

    pytest.importorskip("rosbags")
    store = match_array_typestore()
    fields = store.fielddefs[MATCH_ARRAY_TYPENAME][1]
    assert [name for name, _ in fields] == [m["name"] for m in parsed_message["members"]]


def test_colcon_discovers_an_ament_cmake_package(tmp_path):
    """colcon (colcon-common-extensions from PyPI) sees the repository as one ament_cmake package."""
    pytest.importorskip("colcon_core", reason="colcon is not installed (pip install colcon-common-extensions)")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "coarse_loftr_ros").symlink_to(REPO, target_is_directory=True)
    completed = subprocess.run(
        [sys.executable, "-m", "colcon", "list"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    if completed.returncode != 0 and "No module named colcon" in completed.stderr:
        pytest.skip("colcon cannot run as a module here")
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["coarse_loftr_ros", "src/coarse_loftr_ros", "(ros.ament_cmake)"]
