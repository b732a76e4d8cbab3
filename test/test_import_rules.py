"""The import rules of ARCHITECTURE.md: the package root is light, the runtime never loads torch,
and each layer of ``coarse_loftr_ros`` imports only from the layers below it."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "coarse_loftr_ros"

# The layers of coarse_loftr_ros, lowest first, each with the names under coarse_loftr_ros it
# holds: a module imports from its own layer and the layers before it, never from one after it.
# "shared" is what every layer uses (and, in a ROS install, the generated interfaces `msg`);
# "public" is the face users import: the package root ("": Matcher, MatchResult,
# CoarseLoftrError), the CLI with its commands, and `python -m coarse_loftr_ros.node`.
LAYERS = (
    ("shared", {"errors", "imageio", "outputs", "preprocess", "stop_request", "msg"}),
    ("backends", {"backends"}),
    ("matching", {"matching"}),
    ("ros", {"ros"}),
    ("tools", {"tools"}),
    ("public", {"", "cli", "commands", "node"}),
)


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    process = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(process.stdout.split())


def test_package_root_imports_nothing_heavy():
    loaded = _loaded_after("import coarse_loftr_ros")
    assert not loaded & {"onnxruntime", "cv2", "torch", "tensorrt", "rclpy", "numpy"}


def test_runtime_path_does_not_import_torch(exported_model, freiburg_frames, tmp_path):
    import cv2

    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), freiburg_frames[0])
    code = f"""
import cv2
from coarse_loftr_ros import Matcher
from coarse_loftr_ros.matching.overlay import draw_matches
m = Matcher({str(exported_model)!r})
image = cv2.imread({str(frame)!r})
r = m.match(image, image)
m.match_next(image); m.match_next(image)
draw_matches(image, image, r)
assert len(r) > 100
"""
    loaded = _loaded_after(code)
    assert "onnxruntime" in loaded
    assert not loaded & {"torch", "tensorrt", "pycuda", "rclpy", "coarse_loftr_train"}


def test_coarse_loftr_error_imports_from_the_package_root_without_numpy():
    loaded = _loaded_after(
        "from coarse_loftr_ros import CoarseLoftrError\n"
        "from coarse_loftr_ros.errors import ImageError, ModelError\n"
        "assert issubclass(ImageError, CoarseLoftrError) and issubclass(ModelError, CoarseLoftrError)"
    )
    assert "coarse_loftr_ros" in loaded
    assert not loaded & {"numpy", "cv2", "onnxruntime", "torch", "rclpy"}


# ----- the layers


def _module_name(path: Path) -> str:
    """``coarse_loftr_ros/matching/matcher.py`` -> ``coarse_loftr_ros.matching.matcher`` (a package: its name)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int | None:
    """Index in LAYERS of a module under coarse_loftr_ros, None for a name no layer holds."""
    parts = module.split(".")
    first = parts[1] if len(parts) > 1 else ""
    return next((index for index, (_, names) in enumerate(LAYERS) if first in names), None)


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    return name == "coarse_loftr_ros.msg" or (PACKAGE / relative.with_suffix(".py")).is_file() or (PACKAGE / relative / "__init__.py").is_file()


def _imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module under coarse_loftr_ros) of every import in ``source``, inside functions too.

    ``from X import name`` counts as an import of ``X.name`` where that is a module, else of ``X``
    (so ``from coarse_loftr_ros import Matcher`` imports the package root). A plain ``import
    coarse_loftr_ros`` is no dependency: the root is imported before any module of it runs.
    """
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("coarse_loftr_ros.")]
        elif isinstance(node, ast.ImportFrom):
            base_parts = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*base_parts, *([node.module] if node.module else [])])
            if base != "coarse_loftr_ros" and not base.startswith("coarse_loftr_ros."):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(candidate) else base))
    return found


def _upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    own = _layer(module)
    return [
        f"{module}:{line} ({LAYERS[own][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
        for line, target in _imports(source, module, is_package)
        if _layer(target) is not None and _layer(target) > own
    ]


def _package_modules() -> list[tuple[Path, str]]:
    return [(path, _module_name(path)) for path in sorted(PACKAGE.rglob("*.py"))]


def test_every_module_belongs_to_a_layer():
    unplaced = [module for _, module in _package_modules() if _layer(module) is None]
    assert not unplaced, f"add these modules to a layer in LAYERS (test/test_import_rules.py): {unplaced}"


def test_each_layer_imports_only_from_the_layers_below_it():
    # tools -> ros -> matching -> backends -> shared; the public face may import any of them.
    violations = []
    for path, module in _package_modules():
        violations += _upward_imports(path.read_text(), module, path.name == "__init__.py")
    assert not violations, "\n".join(violations)


def test_the_layer_check_sees_imports_at_module_level_and_inside_functions():
    source = """
import coarse_loftr_ros
from ..backends.base import RawMatches
from ..ros.node import main
from . import steps


def later():
    import coarse_loftr_ros.tools.replay
    from coarse_loftr_ros import Matcher
    from ..ros import pairing
"""
    found = _upward_imports(source, "coarse_loftr_ros.matching.example")
    assert [entry.split(" imports ")[1] for entry in found] == [
        "coarse_loftr_ros.ros.node (ros)",
        "coarse_loftr_ros.tools.replay (tools)",
        "coarse_loftr_ros (public)",
        "coarse_loftr_ros.ros.pairing (ros)",
    ], found
