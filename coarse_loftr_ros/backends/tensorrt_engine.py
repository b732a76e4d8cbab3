"""TensorRT engines built from our ONNX models: cache keys, IO plans, calibration, the builder.

Everything here except ``build_engine_file`` and ``make_entropy_calibrator`` runs without
TensorRT, a GPU or ROS, and is what the tests exercise:

- ``EngineCacheKey``: an engine only runs on the TensorRT version and GPU that built it, so a
  cached engine is keyed by TensorRT version, GPU name, compute capability, the model file's
  SHA-256, the precision and the input size.
- ``TensorSpec`` / ``plan_from_onnx``: the named input and output tensors (shape, dtype,
  bytes) the runtime allocates buffers for; dynamic dimensions are resolved for one input
  size, which is also what the optimisation profile of a dynamic model pins.
- ``CalibrationImages``: INT8 calibration batches from a folder of images, preprocessed by
  the same ``to_model_input`` as the runtime.

This module owns TensorRT and CUDA: ``import_tensorrt``, ``open_cuda`` (page-locked and
device memory and a stream through pycuda or cuda-python), ``device_identity`` and
``tensorrt_available``, each importing its library inside the function. The runtime backend
(``backends/tensorrt_backend.py``) imports them from here; nothing here imports the backend.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..errors import BackendUnavailableError, ImageError, ModelError

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
CACHE_DIR_ENV = "COARSE_LOFTR_ENGINE_CACHE"
"""Environment variable that overrides the default engine cache directory."""
DEFAULT_WORKSPACE_MB = 1024
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
TENSORRT_INSTALL_HINT = (
    "install TensorRT's Python bindings (JetPack's python3-libnvinfer on a Jetson, "
    "or `pip install tensorrt` on an x86 machine with an NVIDIA driver)"
)
CUDA_INSTALL_HINT = "install pycuda (`pip install pycuda`) or cuda-python (`pip install cuda-python`)"


# --------------------------------------------------------------------------- TensorRT, CUDA memory, device identity
# The one place that imports TensorRT, pycuda and cuda-python (inside functions). The runtime
# backend (backends/tensorrt_backend.py) and the builder below use these.


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or BackendUnavailableError saying what to install."""
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailableError(f"TensorRT is not installed: {TENSORRT_INSTALL_HINT}") from None
    except Exception as error:  # a broken install (missing libnvinfer.so, ...)
        raise BackendUnavailableError(f"TensorRT cannot be loaded ({error}): {TENSORRT_INSTALL_HINT}") from None
    major = int(str(tensorrt.__version__).split(".")[0])
    minor = int(str(tensorrt.__version__).split(".")[1])
    if (major, minor) < (8, 5):
        raise BackendUnavailableError(
            f"TensorRT {tensorrt.__version__} is too old: the name-based tensor API needs TensorRT 8.5 or newer"
        )
    return tensorrt


# --------------------------------------------------------------------------- CUDA memory


class _PycudaDevice:
    """Page-locked host memory, device memory and one stream through pycuda."""

    library = "pycuda"

    def __init__(self, index: int) -> None:
        import pycuda.driver as cuda

        self._cuda = cuda
        cuda.init()
        if cuda.Device.count() <= index:
            raise BackendUnavailableError(f"CUDA device {index} does not exist ({cuda.Device.count()} visible)")
        device = cuda.Device(index)
        self.name = str(device.name())
        self.compute_capability = tuple(int(v) for v in device.compute_capability())
        self._context = device.retain_primary_context()  # the context TensorRT's runtime API uses
        self._allocations: list[Any] = []
        self._host_arrays: list[np.ndarray] = []
        with self.activated():
            self._stream = cuda.Stream()

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        with self.activated():
            array = self._cuda.pagelocked_empty(shape, dtype)
        self._host_arrays.append(array)
        return array

    def device_alloc(self, nbytes: int) -> int:
        with self.activated():
            allocation = self._cuda.mem_alloc(max(int(nbytes), 1))
        self._allocations.append(allocation)
        return int(allocation)

    @property
    def stream_handle(self) -> int:
        return int(self._stream.handle)

    def copy_to_device(self, device_pointer: int, host: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(device_pointer, host, self._stream)

    def copy_to_host(self, host: np.ndarray, device_pointer: int) -> None:
        self._cuda.memcpy_dtoh_async(host, device_pointer, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        with self.activated():
            for allocation in self._allocations:
                allocation.free()
            for array in self._host_arrays:
                free = getattr(array.base, "free", None)  # pycuda's HostAllocation; else freed with the array
                if free is not None:
                    free()
            self._allocations.clear()
            self._host_arrays.clear()
            self._stream = None
        self._context.detach()


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python 12.6 and newer
    except ImportError:
        from cuda import cudart  # older cuda-python
    return cudart


class _CudartDevice:
    """The same services as ``_PycudaDevice`` through cuda-python's runtime bindings."""

    library = "cuda-python"

    def __init__(self, index: int) -> None:
        self._rt = _import_cudart()
        self._index = index
        count = self._call(self._rt.cudaGetDeviceCount())
        if count <= index:
            raise BackendUnavailableError(f"CUDA device {index} does not exist ({count} visible)")
        properties = self._call(self._rt.cudaGetDeviceProperties(index))
        name = properties.name
        self.name = (name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)).rstrip("\0 ")
        self.compute_capability = (int(properties.major), int(properties.minor))
        self._device_pointers: list[int] = []
        self._host_pointers: list[int] = []
        with self.activated():
            self._stream = self._call(self._rt.cudaStreamCreate())

    def _call(self, result: tuple) -> Any:
        error, values = result[0], result[1:]
        if error != self._rt.cudaError_t.cudaSuccess:
            message = self._rt.cudaGetErrorString(error)[1]
            raise BackendUnavailableError(
                f"CUDA error: {message.decode() if isinstance(message, bytes) else message}"
            )
        return values[0] if len(values) == 1 else values

    @contextlib.contextmanager
    def activated(self) -> Iterator[None]:
        self._call(self._rt.cudaSetDevice(self._index))  # per thread; binds the primary context
        yield

    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        with self.activated():
            pointer = int(self._call(self._rt.cudaMallocHost(nbytes)))
        self._host_pointers.append(pointer)
        raw = (ctypes.c_byte * nbytes).from_address(pointer)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)

    def device_alloc(self, nbytes: int) -> int:
        with self.activated():
            pointer = int(self._call(self._rt.cudaMalloc(max(int(nbytes), 1))))
        self._device_pointers.append(pointer)
        return pointer

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def copy_to_device(self, device_pointer: int, host: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self._rt.cudaMemcpyAsync(device_pointer, host.ctypes.data, host.nbytes, kind, self._stream))

    def copy_to_host(self, host: np.ndarray, device_pointer: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self._rt.cudaMemcpyAsync(host.ctypes.data, device_pointer, host.nbytes, kind, self._stream))

    def synchronize(self) -> None:
        self._call(self._rt.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        with self.activated():
            for pointer in self._device_pointers:
                self._call(self._rt.cudaFree(pointer))
            for pointer in self._host_pointers:
                self._call(self._rt.cudaFreeHost(pointer))
            self._device_pointers.clear()
            self._host_pointers.clear()
            if self._stream is not None:
                self._call(self._rt.cudaStreamDestroy(self._stream))
                self._stream = None


def open_cuda(device: int = 0) -> _PycudaDevice | _CudartDevice:
    """CUDA memory and a stream on ``device``: pycuda if installed, else cuda-python.

    Raises BackendUnavailableError when neither library is installed, or no GPU/driver.
    """
    reasons = []
    for opener, module in ((_PycudaDevice, "pycuda.driver"), (_CudartDevice, "cuda")):
        try:
            return opener(device)
        except BackendUnavailableError:
            raise
        except ImportError as error:
            if error.name and module.startswith(error.name.split(".")[0]):
                reasons.append(f"{opener.library} is not installed")
            else:  # the module is there but its CUDA library is not (no driver)
                reasons.append(f"{opener.library} cannot load CUDA ({error})")
        except Exception as error:  # pycuda.driver.Error / RuntimeError: no driver or no GPU
            reasons.append(f"{opener.library}: {' '.join(str(error).split())}")
    if all(reason.endswith("is not installed") for reason in reasons):
        raise BackendUnavailableError(f"the TensorRT backend needs CUDA memory: {CUDA_INSTALL_HINT}")
    raise BackendUnavailableError(f"no usable CUDA GPU ({'; '.join(reasons)}); check the NVIDIA driver")


_IDENTITY_CACHE: dict[int, tuple[str, tuple[int, int]]] = {}


def device_identity(device: int = 0) -> tuple[str, tuple[int, int]]:
    """(GPU name, (major, minor) compute capability) of ``device``, for engine cache keys."""
    if device not in _IDENTITY_CACHE:
        cuda = open_cuda(device)
        _IDENTITY_CACHE[device] = (cuda.name, tuple(cuda.compute_capability))
        cuda.close()
    return _IDENTITY_CACHE[device]


def tensorrt_available(device: int = 0) -> tuple[bool, str]:
    """Whether TensorRT, a CUDA memory library and a GPU are all present.

    Returns (True, "TensorRT 10.3.0 on Orin (sm 8.7) via pycuda") or (False, the reason,
    one line that says what to install or check). Never raises.
    """
    try:
        trt = import_tensorrt()
        cuda = open_cuda(device)
    except BackendUnavailableError as error:
        return False, str(error)
    except Exception as error:  # noqa: BLE001 - a probe must not fail the caller
        return False, f"TensorRT or CUDA cannot start: {' '.join(str(error).split())}"
    description = (
        f"TensorRT {trt.__version__} on {cuda.name} "
        f"(sm {cuda.compute_capability[0]}.{cuda.compute_capability[1]}) via {cuda.library}"
    )
    _IDENTITY_CACHE[device] = (cuda.name, tuple(cuda.compute_capability))
    cuda.close()
    return True, description



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


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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
        import_tensorrt()  # raises "TensorRT is not installed: ..." first where it is absent
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
    overrides = {**feature_map_shapes(declared, input_size, _metadata_stride(model)), **(input_shapes or {})}
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


def make_entropy_calibrator(
    batches: Iterable[np.ndarray], input_shape: tuple[int, ...], cache_file: str | os.PathLike
) -> Any:
    """A TensorRT ``IInt8EntropyCalibrator2`` fed by ``batches``, with a calibration cache file.

    Every image input of the network gets the same batch (float32 of ``input_shape``).
    When ``cache_file`` exists TensorRT reuses its scales and reads no images; delete it
    to recalibrate. Needs TensorRT and a CUDA device (not exercised in our CI).
    """
    trt = import_tensorrt()
    cache_file = Path(cache_file)

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._cuda = open_cuda()
            self._batches = iter(batches)
            self._host = self._cuda.pinned_empty(tuple(input_shape), np.float32)
            self._device = self._cuda.device_alloc(self._host.nbytes)
            self._count = 0

        def get_batch_size(self) -> int:  # required by the interface; the batch is explicit
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self._batches, None)
            except Exception as error:  # an exception must not cross into TensorRT
                LOG.error("calibration stopped: %s", error)
                batch = None
            if batch is None:
                LOG.info("calibrated on %d images", self._count)
                return None
            self._count += 1
            with self._cuda.activated():
                np.copyto(self._host, batch)
                self._cuda.copy_to_device(self._device, self._host)
                self._cuda.synchronize()
            return [self._device] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            if cache_file.is_file():
                LOG.info("using the INT8 calibration cache %s (delete it to recalibrate)", cache_file)
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            write_atomically(cache_file, bytes(cache))
            LOG.info("wrote the INT8 calibration cache %s", cache_file)

    return EntropyCalibrator()


# --------------------------------------------------------------------------- builder


@dataclass
class BuildOptions:
    """How to build an engine.

    Attributes:
        precision: ``fp32``; ``fp16`` (FP16 kernels allowed); ``int8`` (INT8 with FP16
            fallback, needs ``calibration_images`` or an existing ``calibration_cache``).
        workspace_mb: builder scratch memory limit in MiB.
        input_size: (width, height) for models with dynamic image inputs; a static model
            must match it when given. With ``size_range`` it is the profile's opt size.
        size_range: ((min width, min height), (max width, max height)) pixels the engine
            accepts (an optimisation profile); None: ``input_size`` only.
        input_shapes: explicit shapes of non-image dynamic inputs.
        calibration_images: folder of images for INT8 calibration.
        calibration_cache: the calibration cache file (default ``<engine>.calib``).
        max_calibration_images: use at most this many images.
    """

    precision: str = "fp32"
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    input_size: tuple[int, int] | None = None
    size_range: SizeRange | None = None
    input_shapes: dict[str, tuple[int, ...]] | None = None
    calibration_images: str | None = None
    calibration_cache: str | None = None
    max_calibration_images: int | None = 500

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ModelError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.workspace_mb < 1:
            raise ModelError(f"the workspace must be at least 1 MiB, got {self.workspace_mb}")


def _flag(trt: Any, name: str) -> Any:
    """``trt.BuilderFlag.<name>`` or None where this TensorRT has no such flag."""
    return getattr(trt.BuilderFlag, name, None)


def build_engine_file(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    options: BuildOptions,
    description: dict[str, Any] | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Build a TensorRT engine from an ONNX model and write it (and its description) atomically.

    Uses only builder calls TensorRT 8.5 to 10 share: ``create_network``, ``OnnxParser``,
    ``set_memory_pool_limit``, ``create_optimization_profile``, ``build_serialized_network``.
    Every parser error is logged. Precision flags are set only where this TensorRT has
    them (``hasattr``): TensorRT 10.12 deprecates the FP16/INT8 flags for strongly typed
    networks and 11 removes them; without them the engine is built in the ONNX types.

    Returns the description written to ``<engine>.json`` (cache key fields, IO plan, the
    ONNX metadata). Raises ModelError (bad model), BackendUnavailableError (no TensorRT/GPU).
    """
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    graph = load_onnx_graph(onnx_path)
    declared = declared_inputs(graph)
    stride = _metadata_stride(graph)
    wanted = default_input_size(graph, options.input_size)
    overrides = {**feature_map_shapes(declared, wanted, stride), **(options.input_shapes or {})}
    resolved = resolve_input_shapes(declared, wanted, overrides)
    input_size = image_input_size(resolved) or wanted
    if options.size_range is not None:
        if input_size is None or stride is None:
            raise ModelError(f"a size range needs a model of `coarse-loftr export` with dynamic image or feature inputs; {onnx_path} has none")
        check_size_range(options.size_range, input_size, stride)

    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # needed by 8.x, ignored by 10
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(index)) for index in range(parser.num_errors)]
        for error in errors:
            LOG.error("ONNX parser: %s", error)
        first = errors[0] if errors else "no error message"
        raise ModelError(
            f"TensorRT cannot parse {onnx_path}: {len(errors)} parser error(s), first: {first}"
        )

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    wanted_flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[options.precision]
    for name in wanted_flags:
        flag = _flag(trt, name)
        if flag is None:
            LOG.warning("this TensorRT (%s) has no BuilderFlag.%s; building without it", trt.__version__, name)
        else:
            config.set_flag(flag)
    tf32 = _flag(trt, "TF32")
    if options.precision == "fp32" and tf32 is not None:
        config.clear_flag(tf32)  # on by default on Ampere and newer (Orin): fp32 should mean fp32
    if options.precision == "fp16" and hasattr(builder, "platform_has_fast_fp16") and not builder.platform_has_fast_fp16:
        LOG.warning("this GPU has no fast FP16; the engine will mostly run FP32 kernels")

    profile_shapes = optimization_profile_shapes(declared, resolved, options.size_range, stride)
    if profile_shapes:
        profile = builder.create_optimization_profile()
        for name, (smallest, best, largest) in profile_shapes.items():
            profile.set_shape(name, smallest, best, largest)
        config.add_optimization_profile(profile)

    calibration_fingerprint = ""
    if options.precision == "int8":
        image_shapes = set(resolved.values())
        if len(image_shapes) != 1 or not all(is_image_shape(shape) and shape[0] == 1 for shape in image_shapes):
            raise ModelError("INT8 calibration from images needs a model whose inputs are all [1, 1, H, W] images")
        cache_file = Path(options.calibration_cache or str(engine_path) + ".calib")
        if options.calibration_images:
            images = CalibrationImages(options.calibration_images, input_size, options.max_calibration_images)
            next(images.batches())  # fail now, not inside TensorRT, when no image is readable
            calibration_fingerprint = images.fingerprint()
            batches: Iterable[np.ndarray] = images.batches()
        elif cache_file.is_file():
            calibration_fingerprint = "cache:" + file_sha256(cache_file)[:16]
            batches = ()
        else:
            raise ModelError("INT8 needs --calibration-images DIR (or an existing calibration cache file)")
        if not hasattr(config, "int8_calibrator"):
            raise BackendUnavailableError(
                f"TensorRT {trt.__version__} has no implicit INT8 calibration; use fp16 or a quantized ONNX model"
            )
        # keep a Python reference: TensorRT calls back into it during build_serialized_network
        calibrator = make_entropy_calibrator(batches, next(iter(image_shapes)), cache_file)
        config.int8_calibrator = calibrator
        if profile_shapes and hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile)

    LOG.info("building a %s TensorRT %s engine from %s (this takes a while)", options.precision, trt.__version__, onnx_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT could not build an engine from {onnx_path}; rerun with --verbose to see why")

    gpu_name, capability = device_identity()
    plan = plan_from_onnx(onnx_path, input_size, overrides)
    built = {
        "format": 1,
        "onnx": str(onnx_path),
        "model_sha256": file_sha256(onnx_path),
        "tensorrt_version": trt.__version__,
        "gpu_name": gpu_name,
        "compute_capability": list(capability),
        "precision": options.precision,
        "input_size": list(input_size) if input_size else None,
        "input_size_range": [list(v) for v in options.size_range] if options.size_range and profile_shapes else None,
        "calibration": calibration_fingerprint,
        "inputs": [_spec_json(s) for s in plan if s.is_input],
        "outputs": [_spec_json(s) for s in plan if not s.is_input],
        "metadata": onnx_metadata(graph),
    }
    if description:
        built.update(description)
    write_atomically(sidecar_path(engine_path), json.dumps(built, indent=2).encode("utf-8"))
    write_atomically(engine_path, bytes(serialized))
    LOG.info("wrote %s (%.1f MB)", engine_path, engine_path.stat().st_size / 1e6)
    return built


def default_input_size(graph: Any, input_size: tuple[int, int] | None) -> tuple[int, int] | None:
    """``input_size``, or for None the default size a dynamic-size export of `coarse-loftr
    export` records (metadata ``input_size``, 640x480 for the shipped model); else None."""
    metadata = onnx_metadata(graph)
    if input_size is None and metadata.get("coarse_loftr.dynamic_input") == "true" and "coarse_loftr.input_size" in metadata:
        width, height = metadata["coarse_loftr.input_size"].lower().split("x")
        return int(width), int(height)
    return input_size


def _metadata_stride(graph: Any) -> int | None:
    """The coarse stride an ONNX model of `coarse-loftr export` records, else None."""
    value = onnx_metadata(graph).get("coarse_loftr.stride")
    return int(value) if value else None


def _spec_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "shape": list(spec.shape), "dtype": np.dtype(spec.dtype).name}

