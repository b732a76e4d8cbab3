"""TensorRT and CUDA: loading the libraries, device memory and identity, the engine builder.

The one place that imports TensorRT, pycuda and cuda-python, each inside the function that
needs it: ``import_tensorrt``, ``open_cuda`` (page-locked and device memory and a stream
through pycuda or cuda-python), ``device_identity`` and ``tensorrt_available``; the runtime
backend (``tensorrt_backend``) uses them, and nothing here imports the backend. The builder,
``build_engine_file`` (with ``make_entropy_calibrator`` for INT8), turns an ONNX model into a
serialized engine and its JSON description.

What an engine needs that runs without TensorRT (cache keys, IO plans, calibration images) is
in ``tensorrt_plan``; only this module needs TensorRT and a GPU, and our CI has neither.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import BackendUnavailableError, ModelError
from ..outputs import write_atomically
from .tensorrt_plan import (
    PRECISIONS,
    TENSORRT_INSTALL_HINT,
    CalibrationImages,
    SizeRange,
    TensorSpec,
    check_size_range,
    declared_inputs,
    default_input_size,
    feature_map_shapes,
    file_sha256,
    image_input_size,
    is_image_shape,
    load_onnx_graph,
    metadata_stride,
    onnx_metadata,
    optimization_profile_shapes,
    plan_from_onnx,
    resolve_input_shapes,
    sidecar_path,
)

LOG = logging.getLogger(__name__)

DEFAULT_WORKSPACE_MB = 1024
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


# --------------------------------------------------------------------------- INT8 calibrator


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
    stride = metadata_stride(graph)
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


def _spec_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "shape": list(spec.shape), "dtype": np.dtype(spec.dtype).name}
