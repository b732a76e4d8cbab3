"""Static checks of the TensorRT code: one code path for TensorRT 8.5 to 10.

TensorRT is not installable on our CI machines, so the backend and builder cannot run
here. These tests read their source with ``ast`` and fail if it touches a TensorRT 8.x
API that TensorRT 10 removed (the binding-index API, implicit batch, ``build_engine``,
``max_workspace_size``, ...), if it stops using the name-based calls, if a precision
flag is used without a guard, or if a module imports TensorRT/CUDA at import time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "coarse_loftr_ros" / "backends" / "tensorrt_backend.py"
BUILDER = REPO / "coarse_loftr_ros" / "backends" / "tensorrt_engine.py"
PLAN = REPO / "coarse_loftr_ros" / "backends" / "tensorrt_plan.py"
COMMAND = REPO / "coarse_loftr_ros" / "commands" / "build_engine.py"
TENSORRT_FILES = (RUNTIME, BUILDER, PLAN, COMMAND)

# Python APIs of TensorRT 8.x removed in TensorRT 10 (or, for execute_v2, the bindings-array
# execution kept in 10 that a name-based code path has no use for).
REMOVED_IN_TENSORRT_10 = {
    # ICudaEngine binding API
    "num_bindings", "get_binding_index", "get_binding_name", "binding_is_input", "get_binding_shape",
    "get_binding_dtype", "get_binding_format", "get_binding_format_desc", "get_binding_bytes_per_component",
    "get_binding_components_per_element", "get_binding_vectorized_dim", "is_shape_binding",
    "is_execution_binding", "get_location", "get_profile_shape", "get_profile_shape_input",
    "has_implicit_batch_dimension", "max_batch_size",
    # IExecutionContext
    "execute", "execute_async", "execute_async_v2", "execute_v2", "set_binding_shape", "get_shape",
    "set_shape_input", "all_binding_shapes_specified", "all_shape_inputs_specified", "get_strides",
    # Builder / BuilderConfig
    "build_engine", "build_cuda_engine", "max_workspace_size", "STRICT_TYPES", "EXPLICIT_PRECISION",
}

NAME_BASED_RUNTIME = {
    "num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype",
    "set_input_shape", "set_tensor_address", "execute_async_v3", "deserialize_cuda_engine",
}
BUILDER_CALLS = {
    "create_network", "OnnxParser", "parse_from_file", "num_errors", "get_error", "set_memory_pool_limit",
    "create_optimization_profile", "set_shape", "add_optimization_profile", "build_serialized_network",
    "IInt8EntropyCalibrator2",
}
GUARDED_FLAGS = {"FP16", "INT8", "BF16", "FP8"}  # deprecated in 10.12, removed in 11: getattr(..., None) only
HEAVY_MODULES = {"tensorrt", "pycuda", "cuda", "onnx", "torch", "rclpy"}


def used_names(source: str) -> dict[str, int]:
    """Attribute names, and string constants that look like names, with their first line.

    Strings count because ``getattr(engine, "num_bindings")`` is a use too.
    """
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            found.setdefault(node.attr, node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            found.setdefault(node.value, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                found.setdefault(alias.name, node.lineno)
    return found


def removed_api_uses(source: str) -> list[str]:
    return sorted(f"{name} (line {line})" for name, line in used_names(source).items() if name in REMOVED_IN_TENSORRT_10)


def test_the_checker_catches_tensorrt_8_code() -> None:
    old_style = """
import tensorrt as trt
def infer(engine, context, bindings, stream):
    for index in range(engine.num_bindings):
        if engine.binding_is_input(index):
            shape = engine.get_binding_shape(index)
    config.max_workspace_size = 1 << 30
    getattr(context, "execute_async_v2")(bindings=bindings, stream_handle=stream.handle)
    builder.build_engine(network, config)
"""
    uses = removed_api_uses(old_style)
    for name in ("num_bindings", "binding_is_input", "get_binding_shape", "max_workspace_size", "execute_async_v2", "build_engine"):
        assert any(use.startswith(name + " ") for use in uses), name


@pytest.mark.parametrize("path", TENSORRT_FILES, ids=lambda p: p.name)
def test_no_tensorrt_8_api_removed_in_10(path: Path) -> None:
    assert removed_api_uses(path.read_text()) == []


def test_runtime_uses_the_name_based_tensor_api() -> None:
    names = used_names(RUNTIME.read_text())
    assert NAME_BASED_RUNTIME - set(names) == set()


def test_cuda_memory_through_both_libraries_lives_in_the_engine_module() -> None:
    names = used_names(BUILDER.read_text())
    # page-locked host memory, device memory and asynchronous copies on one stream, both libraries
    for name in ("pagelocked_empty", "mem_alloc", "memcpy_htod_async", "memcpy_dtoh_async", "Stream",
                 "cudaMallocHost", "cudaMalloc", "cudaMemcpyAsync", "cudaStreamCreate", "cudaStreamSynchronize"):
        assert name in names, name


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (relative imports resolved to package paths)."""
    package = "coarse_loftr_ros" if path.parent.name == "coarse_loftr_ros" else "coarse_loftr_ros." + path.parent.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            found.add(".".join([*base, *([node.module] if node.module else [])]))
    return found


def test_engine_module_and_backend_do_not_import_each_other() -> None:
    # One direction only: the backend uses the engine module, which owns TensorRT, CUDA and device
    # identity, and the plan module (no TensorRT), which the engine module uses in turn.
    assert "coarse_loftr_ros.backends.tensorrt_engine" in _imported_modules(RUNTIME)
    assert "coarse_loftr_ros.backends.tensorrt_plan" in _imported_modules(BUILDER)
    assert "coarse_loftr_ros.backends.tensorrt_backend" not in _imported_modules(BUILDER), _imported_modules(BUILDER)
    plan_imports = _imported_modules(PLAN)
    assert not {"coarse_loftr_ros.backends.tensorrt_backend", "coarse_loftr_ros.backends.tensorrt_engine"} & plan_imports, plan_imports
    for path in (RUNTIME, PLAN):
        source = path.read_text()
        for owned in ("import tensorrt", "import pycuda", "cuda.bindings", "from cuda import"):
            assert owned not in source, (path.name, owned)


def test_builder_uses_the_calls_tensorrt_8_5_to_10_share() -> None:
    assert BUILDER_CALLS - set(used_names(BUILDER.read_text())) == set()


@pytest.mark.parametrize("path", TENSORRT_FILES, ids=lambda p: p.name)
def test_precision_flags_are_looked_up_with_a_guard(path: Path) -> None:
    tree = ast.parse(path.read_text())
    direct = [f"BuilderFlag.{n.attr} (line {n.lineno})" for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr in GUARDED_FLAGS]
    assert direct == [], "use getattr(trt.BuilderFlag, name, None): TensorRT 11 removes these flags"


@pytest.mark.parametrize("path", TENSORRT_FILES, ids=lambda p: p.name)
def test_no_heavy_import_at_module_level(path: Path) -> None:
    tree = ast.parse(path.read_text())
    top_level = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top_level.append(node.module.split(".")[0])
    assert HEAVY_MODULES.isdisjoint(top_level), top_level


def test_importing_the_tensorrt_modules_loads_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "import coarse_loftr_ros.backends.tensorrt_backend, coarse_loftr_ros.backends.tensorrt_engine\n"
        "import coarse_loftr_ros.backends.tensorrt_plan\n"
        "import coarse_loftr_ros.commands.build_engine\n"
        f"print(sorted(m for m in {sorted(HEAVY_MODULES)!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
