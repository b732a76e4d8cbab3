"""TensorRT backend (NVIDIA GPUs and Jetson): one code path for TensorRT 8.5 to 10.

Uses only the name-based tensor API these versions share (``num_io_tensors``,
``get_tensor_name``, ``get_tensor_mode``, ``get_tensor_shape``, ``get_tensor_dtype``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``); the binding-index API
of TensorRT 8.x is gone in 10 and ``test/test_tensorrt_api_usage.py`` keeps it out.

Memory: one page-locked host buffer and one device buffer per named tensor, allocated
once; a call copies the inputs in, runs, and copies the outputs back on one CUDA stream,
asynchronously, then waits once. The exported matcher already reduces the confidence
matrix to its top-K rows inside the graph, so only those K matches cross the bus.

CUDA memory comes from ``tensorrt_engine.open_cuda`` (pycuda, or cuda-python when pycuda
is absent), which works on the device's primary context, the one TensorRT uses, and makes
it current around each call, so any thread may call ``run``. ``tensorrt_engine`` owns the
TensorRT and CUDA imports and the device identity; this module only uses them. Engine cache
keys and IO plans come from ``tensorrt_plan``.

Not executed in our CI (no TensorRT or GPU there): see docs/tensorrt.md and
``scripts/jetson_check.sh``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .base import INPUT_NAMES, METADATA_PREFIX, OUTPUT_NAMES, RawMatches
from .tensorrt_engine import (  # the engine module owns the TensorRT/CUDA imports and device identity
    DEFAULT_WORKSPACE_MB,
    BuildOptions,
    build_engine_file,
    device_identity,
    import_tensorrt,
    open_cuda,
    tensorrt_available,
)
from .tensorrt_plan import (
    EngineCacheKey,
    TensorSpec,
    cached_engine_path,
    declared_inputs,
    default_cache_dir,
    default_input_size,
    feature_map_shapes,
    file_sha256,
    image_input_size,
    load_onnx_graph,
    onnx_metadata,
    read_sidecar,
    resolve_input_shapes,
    sequence_graph_files,
    sidecar_path,
)

LOG = logging.getLogger(__name__)

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

# Re-exported for callers that import them from here (scripts/jetson_check.sh, backends.__init__).
__all__ = ["EngineRunner", "TensorRTBackend", "ensure_engine", "device_identity", "import_tensorrt", "open_cuda", "tensorrt_available"]


# --------------------------------------------------------------------------- engines


class EngineRunner:
    """Runs one serialized TensorRT engine: a dict of named host arrays in, a dict out.

    Serves any engine: the single-graph matcher, and the CNN (image -> features) and
    matcher (features -> matches) graphs of the sequence fast path.

    Args:
        engine_path: a serialized engine built by this TensorRT on this GPU.
        input_size: (width, height) for dynamic image inputs ``[N, C, H, W]``.
        input_shapes: explicit shapes of other dynamic inputs.
        device: CUDA device index.
    """

    def __init__(
        self,
        engine_path: str | Path,
        input_size: tuple[int, int] | None = None,
        input_shapes: dict[str, tuple[int, ...]] | None = None,
        device: int = 0,
    ) -> None:
        trt = import_tensorrt()
        self.engine_path = Path(engine_path)
        if not self.engine_path.is_file():
            raise ModelError(f"TensorRT engine {self.engine_path} does not exist; build it with `coarse-loftr build-engine`")
        self._cuda = open_cuda(device)
        self._lock = threading.Lock()
        try:
            self._load(trt, input_size, input_shapes)
        except BaseException:
            self._cuda.close()
            raise
        self.inputs = [spec for spec in self.plan if spec.is_input]
        self.outputs = [spec for spec in self.plan if not spec.is_input]

    def _load(
        self, trt: Any, input_size: tuple[int, int] | None, input_shapes: dict[str, tuple[int, ...]] | None
    ) -> None:
        """Deserialize the engine, create the context, allocate and bind every IO buffer."""
        with self._cuda.activated():
            self._logger = trt.Logger(trt.Logger.WARNING)
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self._engine is None:
                raise ModelError(
                    f"TensorRT {trt.__version__} cannot load {self.engine_path}: engines only run on the TensorRT "
                    "version and GPU that built them; rebuild it here with `coarse-loftr build-engine`"
                )
            self._context = self._engine.create_execution_context()
            if self._context is None:
                raise ModelError(f"TensorRT cannot create an execution context for {self.engine_path} (out of GPU memory?)")
            self.plan = self._plan(trt, input_size, input_shapes)
            self._host: dict[str, np.ndarray] = {}
            self._device: dict[str, int] = {}
            for spec in self.plan:
                self._host[spec.name] = self._cuda.pinned_empty(spec.shape, spec.dtype)
                self._device[spec.name] = self._cuda.device_alloc(spec.nbytes)
                if not self._context.set_tensor_address(spec.name, self._device[spec.name]):
                    raise ModelError(f"TensorRT refused the buffer of tensor {spec.name!r} of {self.engine_path}")

    def _plan(
        self, trt: Any, input_size: tuple[int, int] | None, input_shapes: dict[str, tuple[int, ...]] | None
    ) -> list[TensorSpec]:
        """Name, resolved shape and dtype of every IO tensor; sets the dynamic input shapes."""
        engine, context = self._engine, self._context
        names = [engine.get_tensor_name(index) for index in range(engine.num_io_tensors)]
        is_input = {name: engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        declared = {name: tuple(engine.get_tensor_shape(name)) for name in names if is_input[name]}
        resolved = resolve_input_shapes(declared, input_size, input_shapes)
        for name, shape in resolved.items():
            if not context.set_input_shape(name, shape):
                raise ModelError(f"engine {self.engine_path} does not accept shape {shape} for input {name!r}")
        plan = []
        for name in names:
            shape = resolved[name] if is_input[name] else tuple(context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            plan.append(TensorSpec(name, tuple(int(d) for d in shape), dtype, is_input[name]))
        return plan

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the engine once; returns a new host array per output tensor."""
        missing = [spec.name for spec in self.inputs if spec.name not in inputs]
        if missing:
            raise ModelError(f"engine {self.engine_path.name} needs inputs {missing}; got {sorted(inputs)}")
        with self._lock, self._cuda.activated():
            for spec in self.inputs:
                array = np.asarray(inputs[spec.name])
                if array.shape != spec.shape:
                    raise ModelError(f"input {spec.name!r} has shape {array.shape}; engine expects {spec.shape}")
                np.copyto(self._host[spec.name], array, casting="same_kind")
                self._cuda.copy_to_device(self._device[spec.name], self._host[spec.name])
            if not self._context.execute_async_v3(self._cuda.stream_handle):
                raise ModelError(f"TensorRT failed to run {self.engine_path.name}")
            for spec in self.outputs:
                self._cuda.copy_to_host(self._host[spec.name], self._device[spec.name])
            self._cuda.synchronize()
            return {spec.name: self._host[spec.name].copy() for spec in self.outputs}

    def close(self) -> None:
        """Free the GPU and page-locked memory; the runner cannot run afterwards."""
        with self._lock:
            if self._cuda is None:
                return
            with self._cuda.activated():
                self._context = None
                self._engine = None
                self._runtime = None
            self._cuda.close()
            self._cuda = None


def ensure_engine(
    onnx_path: str | Path,
    precision: str = "fp16",
    input_size: tuple[int, int] | None = None,
    cache_dir: str | Path | None = None,
    rebuild: bool = False,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    device: int = 0,
) -> Path:
    """The cached engine for ``onnx_path`` on this TensorRT and GPU, built on first use.

    The cache key holds the TensorRT version, GPU name and compute capability, the ONNX
    file's SHA-256, the precision and the input size (for a graph without an image input,
    such as the sequence-mode matching graph, the ``input_size`` of its model);
    ``rebuild=True`` builds anew.
    """
    if precision == "int8":
        raise ModelError(
            "INT8 engines need calibration images: build one with "
            "`coarse-loftr build-engine --int8 --calibration-images DIR` and pass the .engine file"
        )
    trt = import_tensorrt()
    gpu_name, capability = device_identity(device)
    onnx_path = Path(onnx_path)
    graph = load_onnx_graph(onnx_path)
    declared = declared_inputs(graph)
    input_size = default_input_size(graph, input_size)
    stride = onnx_metadata(graph).get(METADATA_PREFIX + "stride")
    resolved = resolve_input_shapes(declared, input_size, feature_map_shapes(declared, input_size, int(stride) if stride else None))
    size = image_input_size(resolved) or input_size  # a graph without image input: its model's size
    if size is None:
        raise ModelError(f"{onnx_path} has no [1, 1, H, W] image input; pass the model's input_size")
    key = EngineCacheKey(trt.__version__, gpu_name, capability, file_sha256(onnx_path), precision, size)
    engine_path = cached_engine_path(cache_dir or default_cache_dir(), onnx_path, key)
    if engine_path.is_file() and sidecar_path(engine_path).is_file() and not rebuild:
        LOG.info("using the cached TensorRT engine %s", engine_path)
        return engine_path
    LOG.warning(
        "building a %s TensorRT engine for %s on %s (first use; minutes on a Jetson) into %s",
        precision, onnx_path.name, gpu_name, engine_path,
    )
    options = BuildOptions(precision=precision, workspace_mb=workspace_mb, input_size=size)
    build_engine_file(onnx_path, engine_path, options, description={"cache_key": asdict(key)})
    return engine_path


def _check_exported(path: Path, metadata: dict[str, str]) -> None:
    if METADATA_PREFIX + "stride" not in metadata:
        raise ModelError(
            f"{path.name} was not written by `coarse-loftr export` (no {METADATA_PREFIX}stride metadata); "
            "the tensorrt backend runs exported matcher models only (use --backend onnxruntime for others)"
        )


class TensorRTBackend:
    """A matcher model from ``coarse-loftr export`` on TensorRT.

    Pair mode runs the single-graph model. When the two sequence-mode graphs lie beside
    the model (``model.features.onnx`` and ``model.matching.onnx``, or the engines
    ``model.features.engine`` and ``model.matching.engine`` that ``build-engine`` writes
    beside ``model.engine``), ``features`` and ``match_features`` run them, so a sequence
    computes each frame's CNN features once (``supports_features``).

    Args:
        model: an ``.onnx`` file (an engine is built on first use and cached) or an
            ``.engine`` built by ``coarse-loftr build-engine`` (loaded directly; its
            ``.engine.json`` description must lie beside it).
        precision: ``fp16`` (default) or ``fp32`` for engines built from ONNX.
        input_size: (width, height) for an ONNX model with dynamic image inputs (an engine is
            built and cached per size), or within the profile of an ``.engine`` built with
            ``build-engine --min-size/--max-size`` (default: its opt size).
        cache_dir: engine cache (default ``~/.cache/coarse_loftr_ros/engines`` or
            ``$COARSE_LOFTR_ENGINE_CACHE``).
        rebuild: build the engine even if the cache holds one.
        workspace_mb: builder memory limit in MiB.
        device: CUDA device index.
    """

    name = "tensorrt"

    def __init__(
        self,
        model: str | Path,
        precision: str = "fp16",
        input_size: tuple[int, int] | None = None,
        cache_dir: str | Path | None = None,
        rebuild: bool = False,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
        device: int = 0,
    ) -> None:
        self.model_path = Path(model)
        self._options = {"precision": precision, "cache_dir": cache_dir, "rebuild": rebuild, "workspace_mb": workspace_mb, "device": device}
        if not self.model_path.is_file():
            raise ModelError(f"model file {self.model_path} does not exist; pass an .onnx or .engine file")
        if self.model_path.suffix.lower() in ENGINE_SUFFIXES:
            self.engine_path = self.model_path
        elif self.model_path.suffix.lower() == ".onnx":
            _check_exported(self.model_path, onnx_metadata(load_onnx_graph(self.model_path)))  # before a long build
            self.engine_path = ensure_engine(self.model_path, precision, input_size, cache_dir, rebuild, workspace_mb, device)
        else:
            raise ModelError(f"the tensorrt backend runs .onnx or .engine files, not {self.model_path.name}")
        description = read_sidecar(self.engine_path)
        self.metadata = {
            k.removeprefix(METADATA_PREFIX): v
            for k, v in description.get("metadata", {}).items()
            if k.startswith(METADATA_PREFIX)
        }
        _check_exported(self.model_path, description.get("metadata", {}))
        self.stride = int(self.metadata["stride"])
        self.precision = description.get("precision", "")
        engine_size = input_size if input_size is not None and self.engine_path == self.model_path else description["input_size"]
        self.input_size_range = description.get("input_size_range")  # [[min w, min h], [max w, max h]] or None
        self._runner = EngineRunner(self.engine_path, tuple(engine_size), device=device)
        names_in = {spec.name for spec in self._runner.inputs}
        names_out = {spec.name for spec in self._runner.outputs}
        if names_in != set(INPUT_NAMES) or not set(OUTPUT_NAMES) <= names_out:
            raise ModelError(
                f"engine {self.engine_path.name} has inputs {sorted(names_in)} and outputs {sorted(names_out)}; "
                f"expected {list(INPUT_NAMES)} -> {list(OUTPUT_NAMES)} (a `coarse-loftr export` model)"
            )
        height, width = self._runner.inputs[0].shape[2:]
        self.input_size = (int(width), int(height))
        if width % self.stride or height % self.stride:
            raise ModelError(f"engine input {width}x{height} is not a multiple of its stride {self.stride}")
        self._features_runner: EngineRunner | None = None
        self._matching_runner: EngineRunner | None = None
        try:
            self._open_sequence_graphs(precision, cache_dir, rebuild, workspace_mb, device)
        except ModelError as error:
            LOG.warning("sequence mode will run the pair graph on every pair: %s", error)

    def _open_sequence_graphs(
        self, precision: str, cache_dir: str | Path | None, rebuild: bool, workspace_mb: int, device: int
    ) -> None:
        """Load (building from ONNX if needed) the features and matching graphs beside the model."""
        features_file, matching_file = sequence_graph_files(self.model_path)
        if not (features_file.is_file() and matching_file.is_file()):
            return
        if self.model_path.suffix.lower() == ".onnx":
            features_file, matching_file = (
                ensure_engine(path, precision, self.input_size, cache_dir, rebuild, workspace_mb, device)
                for path in (features_file, matching_file)
            )
        features = EngineRunner(features_file, self.input_size, device=device)
        shape = next((s.shape for s in features.outputs if s.name == "features"), None)  # [1, C, rows, columns]
        matching = EngineRunner(matching_file, input_shapes={"features0": shape, "features1": shape} if shape else None, device=device)
        expected = (
            ({s.name for s in features.inputs}, {"image"}),
            ({s.name for s in matching.inputs}, {"features0", "features1"}),
        )
        if any(found != wanted for found, wanted in expected) or "features" not in {s.name for s in features.outputs} or not (
            set(OUTPUT_NAMES) <= {s.name for s in matching.outputs}
        ):
            features.close()
            matching.close()
            raise ModelError(f"{features_file.name} / {matching_file.name} are not the sequence graphs of `coarse-loftr export`")
        self._features_runner, self._matching_runner = features, matching

    @property
    def supports_features(self) -> bool:
        """True when sequence mode can compute each frame's CNN features once."""
        return self._features_runner is not None

    def set_input_size(self, size: tuple[int, int]) -> None:
        """Run at ``size`` (width, height) from now on: an ``.onnx`` model gets (or builds and
        caches) its engine for that size; an ``.engine`` reopens at a size inside its profile.
        ModelError (one line) for a size the model or engine cannot take."""
        from ..preprocess import check_input_size

        size = check_input_size(size, self.stride)
        if size == self.input_size:
            return
        if self.model_path.suffix.lower() in ENGINE_SUFFIXES and self.input_size_range is None:
            raise ModelError(
                f"engine {self.model_path.name} was built for {self.input_size[0]}x{self.input_size[1]} only; rebuild it with "
                f"`coarse-loftr build-engine --width {size[0]} --height {size[1]}` or a --min-size/--max-size range"
            )
        self.close()
        self.__init__(self.model_path, input_size=size, **self._options)

    def features(self, image: np.ndarray) -> np.ndarray:
        """Per-frame features (the features engine's output) of one float32 [1, 1, H, W] image (a host array)."""
        return self._features_runner.run({"image": image})["features"]

    def match_features(self, features0: np.ndarray, features1: np.ndarray) -> RawMatches:
        """Matches from two feature maps returned by ``features``, in model-input pixels."""
        return RawMatches.from_outputs(self._matching_runner.run({"features0": features0, "features1": features1}))

    @property
    def model_name(self) -> str:
        return self.metadata.get("name", self.model_path.name)

    def run(self, image0: np.ndarray, image1: np.ndarray) -> RawMatches:
        """Match two float32 [1, 1, H, W] images in [0, 1]; matches in model-input pixels."""
        outputs = self._runner.run({INPUT_NAMES[0]: image0, INPUT_NAMES[1]: image1})
        return RawMatches.from_outputs(outputs)

    def close(self) -> None:
        """Free the GPU memory of every engine of this backend."""
        for runner in (self._runner, self._features_runner, self._matching_runner):
            if runner is not None:
                runner.close()
