"""What a TensorRT engine needs that runs without TensorRT: cache keys, IO plans, calibration data.

Nothing here calls TensorRT, CUDA or a GPU; it is what the tests exercise (the calls that need
TensorRT are in ``tensorrt_engine``, which builds on this module):

- ``EngineCacheKey``: an engine only runs on the TensorRT version and GPU that built it, so a
  cached engine is keyed by TensorRT version, GPU name, compute capability, the model file's
  SHA-256, the precision and the input size; ``cached_engine_path``, ``sidecar_path`` and
  ``read_sidecar`` name and read the files beside it.
- ``TensorSpec`` / ``plan_from_onnx``: the named input and output tensors (shape, dtype,
  bytes) the runtime allocates buffers for; dynamic dimensions are resolved for one input
  size, which is also what the optimisation profile of a dynamic model pins
  (``optimization_profile_shapes``). ONNX graphs are read with the ``onnx`` package.
- ``CalibrationImages``: INT8 calibration batches from a folder of images, preprocessed by
  the same ``to_model_input`` as the runtime.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import BackendUnavailableError, ImageError, ModelError

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
CACHE_DIR_ENV = "COARSE_LOFTR_ENGINE_CACHE"
"""Environment variable that overrides the default engine cache directory."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
TENSORRT_INSTALL_HINT = (
    "install TensorRT's Python bindings (JetPack's python3-libnvinfer on a Jetson, "
    "or `pip install tensorrt` on an x86 machine with an NVIDIA driver)"
)


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """The engine cache: ``$COARSE_LOFTR_ENGINE_CACHE``, else ``~/.cache/coarse_loftr_ros/engines``."""
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "coarse_loftr_ros" / "engines"


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineCacheKey:
    """Everything a serialized TensorRT engine depends on.

    Attributes:
        tensorrt_version: ``tensorrt.__version__`` of the builder, e.g. ``"10.3.0"``.
        gpu_name: the CUDA device name, e.g. ``"Orin"`` or ``"NVIDIA GeForce RTX 3060"``.
        compute_capability: (major, minor) of the device, e.g. (8, 7).
        model_sha256: hex SHA-256 of the ONNX file.
        precision: ``fp32``, ``fp16`` or ``int8``.
        input_size: (width, height) of the image inputs in pixels.
        calibration: fingerprint of the INT8 calibration data; empty for fp32 and fp16.
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    model_sha256: str
    precision: str
    input_size: tuple[int, int]
    calibration: str = ""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def digest(self) -> str:
        """First 16 hex digits of the SHA-256 of the key's fields (a stable JSON form)."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def file_name(self, model_stem: str) -> str:
        """``<model>_<precision>_<W>x<H>_<digest>.engine``: readable, and unique per key."""
        width, height = self.input_size
        safe_stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_stem) or "model"
        return f"{safe_stem}_{self.precision}_{width}x{height}_{self.digest()}.engine"


def cached_engine_path(cache_dir: str | os.PathLike, model_path: str | os.PathLike, key: EngineCacheKey) -> Path:
    """Where the engine for ``key`` built from ``model_path`` lives in ``cache_dir``."""
    return Path(cache_dir) / key.file_name(Path(model_path).stem)


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    """The JSON file beside an engine (``MODEL.engine.json``) that describes it."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def sequence_graph_files(model_path: str | os.PathLike) -> tuple[Path, Path]:
    """The sequence-mode graphs beside a pair-mode model, named as ``coarse-loftr export`` does.

    ``model.onnx`` -> (``model.features.onnx``, ``model.matching.onnx``); the same rule
    names the engines built from them (``model.features.engine``, ``model.matching.engine``).
    """
    path = Path(model_path)
    return path.with_suffix(".features" + path.suffix), path.with_suffix(".matching" + path.suffix)


def read_sidecar(engine_path: str | os.PathLike) -> dict[str, Any]:
    """The description written beside an engine by ``build_engine_file``."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise ModelError(
            f"{path} is missing: an engine needs the JSON description written beside it by "
            f"`coarse-loftr build-engine`; rebuild the engine with that command"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"cannot read the engine description {path}: {error}; rebuild the engine") from None


# --------------------------------------------------------------------------- IO plans


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output tensor of a model or engine.

    ``shape`` may hold -1 for a dimension only known at run time (``declared`` shapes);
    a spec in a buffer plan has every dimension resolved.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    is_input: bool

    @property
    def is_resolved(self) -> bool:
        return all(dim >= 0 for dim in self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of a buffer holding the tensor (resolved shapes only)."""
        if not self.is_resolved:
            raise ModelError(f"tensor {self.name!r} has an unresolved shape {self.shape}")
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def is_image_shape(shape: Sequence[int]) -> bool:
    """A grayscale image tensor ``[N, 1, H, W]`` (any dimension but C may be dynamic, -1)."""
    return len(shape) == 4 and shape[1] == 1


def resolve_input_shapes(
    declared: dict[str, tuple[int, ...]],
    input_size: tuple[int, int] | None = None,
    overrides: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Concrete shapes for a model's inputs.

    Args:
        declared: input name -> declared shape, -1 marking a dynamic dimension.
        input_size: (width, height) in pixels for image inputs ``[N, 1, H, W]``: fills
            their dynamic H and W (a dynamic N becomes 1), and must equal the size of a
            static image input.
        overrides: explicit shapes for other inputs with dynamic dimensions (e.g. feature maps).

    Raises:
        ModelError: a dynamic dimension that neither rule resolves, or a shape that
            contradicts the declared static dimensions.
    """
    overrides = overrides or {}
    resolved: dict[str, tuple[int, ...]] = {}
    for name, shape in declared.items():
        shape = tuple(int(d) for d in shape)
        if name in overrides:
            concrete = tuple(int(d) for d in overrides[name])
            if len(concrete) != len(shape) or any(d >= 0 and d != c for d, c in zip(shape, concrete)):
                raise ModelError(f"shape {concrete} given for input {name!r} does not fit its declared shape {shape}")
        elif is_image_shape(shape) and input_size is not None:
            width, height = input_size
            if (shape[2] >= 0 and shape[2] != height) or (shape[3] >= 0 and shape[3] != width):
                raise ModelError(
                    f"model input {name!r} is fixed at {shape[3]}x{shape[2]} pixels, not "
                    f"{width}x{height}; re-export the model at that size or use its own size"
                )
            concrete = (shape[0] if shape[0] >= 0 else 1, 1, height, width)
        elif all(d >= 0 for d in shape):
            concrete = shape
        else:
            raise ModelError(
                f"input {name!r} has dynamic dimensions {shape} that cannot be inferred; give its shape explicitly"
            )
        resolved[name] = concrete
    return resolved


def image_input_size(shapes: dict[str, tuple[int, ...]]) -> tuple[int, int] | None:
    """(width, height) of the ``[N, 1, H, W]`` image inputs of resolved shapes, None if none."""
    sizes = {(shape[3], shape[2]) for shape in shapes.values() if is_image_shape(shape)}
    if len(sizes) > 1:
        raise ModelError(f"the model's image inputs have different sizes {sorted(sizes)}")
    return next(iter(sizes), None)


SizeRange = tuple[tuple[int, int], tuple[int, int]]  # ((min width, min height), (max width, max height)), pixels


def feature_map_shapes(
    declared: dict[str, tuple[int, ...]], input_size: tuple[int, int] | None, stride: int | None
) -> dict[str, tuple[int, ...]]:
    """Shapes of the dynamic feature-map inputs ``[N, C, rows, columns]`` (C > 1) of a
    sequence-mode matching graph at image size ``input_size`` (width, height) and coarse
    ``stride``: ``(1, C, height / stride, width / stride)``; empty without size or stride."""
    if input_size is None or stride is None:
        return {}
    width, height = input_size
    return {
        name: (1, shape[1], height // stride, width // stride)
        for name, shape in declared.items()
        if len(shape) == 4 and shape[1] > 1 and (shape[2] < 0 or shape[3] < 0)
    }


def check_size_range(size_range: SizeRange, best: tuple[int, int], stride: int) -> SizeRange:
    """``size_range`` validated: multiples of ``stride``, min <= ``best`` (the size the engine is
    tuned for) <= max in each direction; ModelError (one line) otherwise."""
    (min_w, min_h), (max_w, max_h) = size_range
    if any(v % stride or v <= 0 for v in (min_w, min_h, max_w, max_h)):
        raise ModelError(f"profile sizes {min_w}x{min_h} .. {max_w}x{max_h} must be positive multiples of the stride {stride}")
    if not (min_w <= best[0] <= max_w and min_h <= best[1] <= max_h):
        raise ModelError(f"the engine's size {best[0]}x{best[1]} lies outside its profile {min_w}x{min_h} .. {max_w}x{max_h}")
    return (min_w, min_h), (max_w, max_h)


def optimization_profile_shapes(
    declared: dict[str, tuple[int, ...]],
    resolved: dict[str, tuple[int, ...]],
    size_range: SizeRange | None = None,
    stride: int | None = None,
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shapes for each dynamic input (``IOptimizationProfile.set_shape``).

    Without ``size_range`` all three are pinned to the resolved shape: an engine for one
    input size (it is part of the cache key). With ``size_range`` (pixels), image inputs
    ``[N, 1, H, W]`` span it, feature maps ``[N, C, rows, columns]`` span it divided by
    ``stride``, and opt is the resolved shape (the size TensorRT tunes its kernels for).
    Static inputs need no profile and are left out.
    """
    profiles = {}
    for name, shape in declared.items():
        if not any(d < 0 for d in shape):
            continue
        best = resolved[name]
        if size_range is None or len(best) != 4:
            profiles[name] = (best,) * 3
            continue
        divisor = 1 if is_image_shape(shape) else stride
        if divisor is None:
            raise ModelError(f"input {name!r} is a feature map; its profile needs the model's stride")
        (min_w, min_h), (max_w, max_h) = size_range
        smallest = (best[0], best[1], min_h // divisor, min_w // divisor)
        largest = (best[0], best[1], max_h // divisor, max_w // divisor)
        if not all(s <= b <= g for s, b, g in zip(smallest, best, largest)):
            raise ModelError(f"input {name!r}: shape {best} lies outside the profile {smallest} .. {largest}")
        profiles[name] = (smallest, best, largest)
    return profiles


def _import_onnx() -> Any:
    """The ``onnx`` package (the TensorRT path reads graphs with it); when it is missing and
    TensorRT is missing too, the error names TensorRT first: it is what the user lacks most."""
    try:
        import onnx
    except ImportError:
        if importlib.util.find_spec("tensorrt") is None:
            raise BackendUnavailableError(f"TensorRT is not installed: {TENSORRT_INSTALL_HINT}") from None
        raise BackendUnavailableError(
            "the TensorRT path reads ONNX graphs with the onnx package, which is missing: pip install 'onnx>=1.14'"
        ) from None
    return onnx


def _onnx_dims(value_info: Any) -> tuple[int, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in dims)


def _onnx_dtype(value_info: Any) -> np.dtype:
    onnx = _import_onnx()
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type))


def load_onnx_graph(path: str | os.PathLike) -> Any:
    """The ONNX ModelProto of ``path`` without its external weights (only the graph is read)."""
    onnx = _import_onnx()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX model {path} does not exist; export one with `coarse-loftr export`")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, OSError, ...
        raise ModelError(f"{path} is not a readable ONNX model ({type(error).__name__}: {error})") from None


def declared_inputs(model: Any) -> dict[str, tuple[int, ...]]:
    """Graph input name -> declared shape (-1 for dynamic), initializers excluded."""
    initializers = {init.name for init in model.graph.initializer}
    return {vi.name: _onnx_dims(vi) for vi in model.graph.input if vi.name not in initializers}


def onnx_metadata(model: Any) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict."""
    return {prop.key: prop.value for prop in model.metadata_props}


def default_input_size(graph: Any, input_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """``input_size``, or for None the default size a dynamic-size export of `coarse-loftr
    export` records (metadata ``input_size``, 640x480 for the shipped model); else None."""
    metadata = onnx_metadata(graph)
    if input_size is None and metadata.get("coarse_loftr.dynamic_input") == "true" and "coarse_loftr.input_size" in metadata:
        width, height = metadata["coarse_loftr.input_size"].lower().split("x")
        return int(width), int(height)
    return input_size


def metadata_stride(graph: Any) -> int | None:
    """The coarse stride an ONNX model of `coarse-loftr export` records, else None."""
    value = onnx_metadata(graph).get("coarse_loftr.stride")
    return int(value) if value else None


def plan_from_onnx(
    path: str | os.PathLike,
    input_size: tuple[int, int] | None = None,
    input_shapes: dict[str, tuple[int, ...]] | None = None,
) -> list[TensorSpec]:
    """Buffer plan of an ONNX model: its inputs then outputs, shapes resolved for one input size.

    Dynamic input dimensions are resolved by ``resolve_input_shapes`` (the feature maps of a
    dynamic-size sequence-mode graph by ``feature_map_shapes``; without ``input_size`` a
    dynamic-size export of `coarse-loftr export` takes its metadata's default); output shapes then
    come from ONNX shape inference on the model with those input shapes fixed. The
    TensorRT runtime builds the same plan from the engine; TensorRT before 9 turns int64
    tensors into int32, so dtypes may differ there (shapes and names do not).

    Raises:
        ModelError: unreadable model, unresolvable input, or an output whose shape
            shape inference cannot determine.
    """
    onnx = _import_onnx()
    model = load_onnx_graph(path)
    declared = declared_inputs(model)
    input_size = default_input_size(model, input_size)
    overrides = {**feature_map_shapes(declared, input_size, metadata_stride(model)), **(input_shapes or {})}
    resolved = resolve_input_shapes(declared, input_size, overrides)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in initializers]

    outputs = list(model.graph.output)
    if any(any(d < 0 for d in _onnx_dims(vi)) for vi in outputs):
        for vi in inputs:  # pin the inputs, then let shape inference propagate
            for dim, size in zip(vi.type.tensor_type.shape.dim, resolved[vi.name]):
                dim.ClearField("dim_param")
                dim.dim_value = size
        try:
            # data_prop: follows the Shape -> Gather -> Reshape chains of a dynamic-size export
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception as error:
            raise ModelError(f"ONNX shape inference failed on {path}: {error}") from None
        outputs = list(inferred.graph.output)

    plan = [TensorSpec(vi.name, resolved[vi.name], _onnx_dtype(vi), True) for vi in inputs]
    for vi in outputs:
        spec = TensorSpec(vi.name, _onnx_dims(vi), _onnx_dtype(vi), False)
        if not spec.is_resolved:
            raise ModelError(f"the shape of output {vi.name!r} of {path} cannot be inferred: {spec.shape}")
        plan.append(spec)
    return plan


# --------------------------------------------------------------------------- calibration


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"calibration image folder {folder} does not exist; pass a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}; pass a folder of calibration images")
    return files


def images_fingerprint(files: Sequence[Path]) -> str:
    """First 16 hex digits of a SHA-256 over the files' names and contents (INT8 cache keys)."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(file_sha256(path).encode("ascii"))
    return digest.hexdigest()[:16]


class CalibrationImages:
    """INT8 calibration batches: images of a folder, preprocessed exactly as at run time.

    Each batch is one image as float32 ``[1, 1, H, W]`` in [0, 1] (``H, W`` from
    ``input_size = (width, height)``), read by ``imageio.read_image`` and made by
    ``preprocess.to_model_input``, as ``coarse-loftr match`` does. Unreadable files are
    skipped with a warning. The same image feeds every image input of the
    model, which is how the matcher sees a pair of similar frames.
    """

    def __init__(self, folder: str | os.PathLike, input_size: tuple[int, int], max_images: int | None = None) -> None:
        self.files = list_images(folder)
        if max_images is not None:
            if max_images < 1:
                raise ValueError("max_images must be at least 1")
            self.files = self.files[:max_images]
        self.input_size = (int(input_size[0]), int(input_size[1]))

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint(self) -> str:
        return images_fingerprint(self.files)

    def batches(self) -> Iterator[np.ndarray]:
        """Yield one preprocessed float32 [1, 1, H, W] array per readable image."""
        from ..imageio import read_image
        from ..preprocess import to_model_input

        produced = 0
        for path in self.files:
            try:
                tensor, _ = to_model_input(read_image(path), self.input_size)
            except ImageError as error:
                LOG.warning("skipping calibration image: %s", error)
                continue
            produced += 1
            yield np.ascontiguousarray(tensor, dtype=np.float32)
        if produced == 0:
            raise ImageError(f"none of the {len(self.files)} calibration images could be read")
