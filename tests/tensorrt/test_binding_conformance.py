"""Our TensorRT and CUDA calls against the real bindings' names, and the fakes' strictness.

The fakes (tests/tensorrt/fakes/) record every name our code touches while build_engine and the
backend run on them; those recorded names must exist in the real TensorRT release of that path, in
pycuda and in cuda-python (name lists committed in tests/tensorrt/binding_names/, written by
tools/binding_names.py). A renamed or removed call in the library then fails here, on a machine
without a GPU (CI included). The second half checks that the fakes refuse what the real libraries
refuse, so the tests of test_build_and_backend.py mean something.
"""

from __future__ import annotations

import inspect
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime import open_backend
from clca_deploy.tensorrt.build import EngineConfig, build_engine
from clca_deploy.tensorrt.cuda import CudaPythonBinding, PyCudaBinding, current, open_binding
from clca_deploy.tensorrt.plan import BatchProfile
from tests.tensorrt import binding_names as bindings
from tests.tensorrt import fakes
from tests.tensorrt.fakes import expected_logits, tiny_onnx

V10_3, V10_13, V11_4 = bindings.TENSORRT_VERSIONS
quiet = lambda _: None  # noqa: E731

# (id, TensorRT version, engine precision, ONNX precision, weak typing)
PATHS = [
    ("10.3-strong", V10_3, "fp32", "fp32", False),
    ("10.3-strong-fp16", V10_3, "fp16", "fp16", False),
    ("10.3-weak-fp16", V10_3, "fp16", "fp32", True),
    ("10.3-weak-int8", V10_3, "int8", "int8", True),
    ("10.13-strong", V10_13, "int8", "int8", False),
    ("10.13-weak-fp16", V10_13, "fp16", "fp32", True),
    ("11.4-strong", V11_4, "fp32", "fp32", False),
    ("11.4-strong-fp16", V11_4, "fp16", "fp16", False),
]


def exercise(stack: fakes.FakeStack, folder: Path, precision: str, onnx_precision: str, weak: bool, monkeypatch) -> None:
    """Our code's whole path on the fakes: a failed parse, a build with a foreign timing cache, a fixed-batch
    build, the backend on both bindings (runs, a split batch, a refused batch), a CUDA error, an engine without
    a sidecar run with its --engine-source, and a DLA build with an optimisation level on a (fake) Jetson."""
    onnx_path = tiny_onnx(folder / "m.onnx", precision=onnx_precision)
    stack.controls.parser_errors = ["In node 0 (Unsupported): UNSUPPORTED_NODE"]
    with pytest.raises(ClcaDeployError, match="cannot parse"):
        build_engine(onnx_path, folder / "m.engine", EngineConfig(precision, weak_typing=weak), log=quiet)
    stack.controls.parser_errors = []
    cache = folder / "timing.cache"
    cache.write_bytes(b"a cache from another GPU")
    config = EngineConfig(precision, batch=BatchProfile(2, 4, 8), timing_cache=cache, weak_typing=weak)
    engine = build_engine(onnx_path, folder / "m.engine", config, log=quiet).path
    fixed = build_engine(tiny_onnx(folder / "f.onnx", precision=onnx_precision, batch=2), folder / "f.engine",
                         EngineConfig(precision, weak_typing=weak), log=quiet).path
    batch = np.random.default_rng(1).standard_normal((11, 3, 32, 32)).astype(np.float32)
    for binding in ("pycuda", "cuda-python"):
        with open_backend(engine, cuda_binding=binding) as backend:
            np.testing.assert_allclose(backend(batch), expected_logits(batch, 15), rtol=1e-5, atol=1e-6)
            with pytest.raises(ClcaDeployError, match="build-trt --batch"):
                backend(batch[:1])
        with open_backend(fixed, cuda_binding=binding) as backend:
            np.testing.assert_allclose(backend(batch[:2]), expected_logits(batch[:2], 15), rtol=1e-5, atol=1e-6)
    with pytest.raises(ClcaDeployError, match="CUDA call cuDeviceGet failed: cuda error invalid device"):
        open_binding(len(stack.gpu.devices), "cuda-python")  # an error path: cuGetErrorString
    exercise_elsewhere(stack, folder, onnx_path, Path(engine), batch, monkeypatch)
    assert stack.gpu.live() == {key: 0 for key in stack.gpu.live()}


def exercise_elsewhere(stack: fakes.FakeStack, folder: Path, onnx_path: Path, engine: Path, batch, monkeypatch) -> None:
    """The same on every path: a copy of ``engine`` without its sidecar (as trtexec leaves one), run with the ONNX
    file it came from; an fp16 engine built for DLA core 1 at optimisation level 1, then run there."""
    foreign = folder / "foreign.engine"
    foreign.write_bytes(engine.read_bytes())
    with open_backend(foreign, engine_source=onnx_path, cuda_binding="cuda-python") as backend:
        np.testing.assert_allclose(backend(batch[:4]), expected_logits(batch[:4], 15), rtol=1e-5, atol=1e-6)
    monkeypatch.setattr("clca_deploy.system.jetson.is_jetson", lambda: True)
    stack.controls.dla_cores = 2
    config = EngineConfig("fp16", batch=BatchProfile(1, 2, 4), dla_core=1, optimization_level=1)
    dla = build_engine(tiny_onnx(folder / "d.onnx", precision="fp16"), folder / "d.engine", config, log=quiet).path
    with open_backend(dla, cuda_binding="pycuda") as backend:
        np.testing.assert_allclose(backend(batch[:2]), expected_logits(batch[:2], 15), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """{path id: {"tensorrt": [...], "pycuda": [...], "cuda-python": [...]}}, each path run once on its fakes."""
    results = {}
    for path_id, version, precision, onnx_precision, weak in PATHS:
        with pytest.MonkeyPatch.context() as monkeypatch:
            stack = fakes.install(monkeypatch, version)
            exercise(stack, tmp_path_factory.mktemp(path_id), precision, onnx_precision, weak, monkeypatch)
            results[path_id] = {**stack.records(), "signatures": stack.signatures()}
    return results


def readable(names) -> str:
    return "\n    " + "\n    ".join(sorted(names))


@pytest.mark.parametrize("path_id, version", [(p[0], p[1]) for p in PATHS])
def test_tensorrt_names_we_use_exist_in_that_release(recorded, path_id, version):
    used = recorded[path_id]["tensorrt"]
    assert "Builder.build_serialized_network" in used and "IExecutionContext.execute_async_v3" in used, readable(used)
    missing = bindings.missing_names(used, bindings.tensorrt_names(version))
    assert missing == [], f"TensorRT {version} lacks {missing}; {path_id} used:{readable(used)}"


@pytest.mark.parametrize("path_id", [p[0] for p in PATHS if p[1] == V11_4])
def test_no_removed_weak_typing_name_is_touched_on_tensorrt_11(recorded, path_id):
    used = recorded[path_id]["tensorrt"]
    assert sorted(set(used) & set(fakes.REMOVED_IN_11)) == [], readable(used)
    # GPU_FALLBACK (with --dla-core) is no precision flag: 11.x keeps it.
    kept = ("BuilderFlag", "BuilderFlag.GPU_FALLBACK")
    assert not [name for name in used if name.startswith(("BuilderFlag", "IInt8")) and name not in kept], readable(used)


def test_every_path_touches_the_dla_optimisation_and_engine_source_names(recorded):
    """The recording sees the builder options and the sidecar-less load, so their checks above are not vacuous."""
    wanted = {
        "IBuilderConfig.builder_optimization_level", "IBuilderConfig.default_device_type", "IBuilderConfig.DLA_core",
        "DeviceType.DLA", "BuilderFlag.GPU_FALLBACK", "Builder.num_DLA_cores", "Runtime.num_DLA_cores", "Runtime.DLA_core",
        "ICudaEngine.get_tensor_profile_shape",
    }
    assert {path: sorted(wanted - set(r["tensorrt"])) for path, r in recorded.items()} == {path: [] for path in recorded}


def test_weak_paths_touch_their_flags(recorded):
    """The recording sees what the weak paths use, so the 11.x check above is not vacuous."""
    assert "BuilderFlag.FP16" in recorded["10.3-weak-fp16"]["tensorrt"]
    assert "BuilderFlag.INT8" in recorded["10.3-weak-int8"]["tensorrt"]
    assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" in recorded["10.3-strong"]["tensorrt"]
    assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" not in recorded["11.4-strong"]["tensorrt"]


def test_the_fakes_removed_names_are_the_real_removed_names():
    """Each name the 11.x fake lacks exists in 10.3 and 10.13 and is gone from 11.4 (so the fake is right to lack it)."""
    for name in fakes.REMOVED_IN_11:
        assert name in bindings.tensorrt_names(V10_3) and name in bindings.tensorrt_names(V10_13), name
        assert name not in bindings.tensorrt_names(V11_4), name


@pytest.mark.parametrize("library, names", [("pycuda", bindings.pycuda_names), ("cuda-python", bindings.cuda_bindings_names)])
def test_cuda_binding_names_we_use_exist(recorded, library, names):
    used = sorted({name for records in recorded.values() for name in records[library]})
    assert {"driver.Stream.synchronize", "driver.cuStreamSynchronize"} & set(used), readable(used)
    assert "driver.cuGetErrorString" in used or library == "pycuda", readable(used)
    missing = bindings.missing_names(used, names())
    assert missing == [], f"{library} lacks {missing}; we used:{readable(used)}"


def test_the_same_names_on_every_tensorrt_path(recorded):
    """Strong and weak paths differ only by the flags they touch (a path-specific call would show here)."""
    flagless = {path: {n for n in r["tensorrt"] if not n.startswith(("BuilderFlag", "NetworkDefinitionCreationFlag", "IBuilderConfig.set_flag"))} for path, r in recorded.items()}
    first = flagless["10.3-strong"]
    assert {path: sorted(names ^ first) for path, names in flagless.items() if names != first} == {}


def signature_mismatches(signatures: dict[str, tuple[str, ...]], available: frozenset[str]) -> list[str]:
    """Fake callables whose parameter names the real one does not take (where the real one names any)."""
    keywords: dict[str, set[str]] = {}
    for entry in available:
        if entry.endswith(")") and "(" in entry:
            owner, _, keyword = entry[:-1].partition("(")
            keywords.setdefault(owner, set()).add(keyword)
    wrong = []
    for name, parameters in sorted(signatures.items()):
        real = keywords.get(name, set())
        if real and set(parameters) - real:
            wrong.append(f"{name}{parameters}: the real one takes {sorted(real)}")
    return wrong


@pytest.mark.parametrize("path_id, version", [(p[0], p[1]) for p in PATHS])
def test_the_fakes_take_the_real_parameters(recorded, path_id, version):
    """Positional calls that work on a fake work on the real binding: same parameter names (so the same arity)."""
    signatures = recorded[path_id]["signatures"]
    assert signature_mismatches(signatures["tensorrt"], bindings.tensorrt_names(version)) == []
    assert signature_mismatches(signatures["pycuda"], bindings.pycuda_names()) == []
    assert signature_mismatches(signatures["cuda-python"], bindings.cuda_bindings_names()) == []
    assert len(signatures["tensorrt"]) > 20 and len(signatures["cuda-python"]) > 10, signatures


def test_a_wrong_name_is_reported(recorded):
    used = set(recorded["11.4-strong"]["tensorrt"]) | {"IExecutionContext.execute_async_v4", "BuilderFlag.FP16"}
    assert bindings.missing_names(used, bindings.tensorrt_names(V11_4)) == ["BuilderFlag.FP16", "IExecutionContext.execute_async_v4"]


def test_a_renamed_call_in_the_backend_is_caught(tmp_path, monkeypatch):
    """The backend's source with execute_async_v3 renamed: the recorded names carry the new name, and the check fails."""
    from clca_deploy.runtime import tensorrt_backend

    stack = fakes.install(monkeypatch, V11_4)
    engine = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(), log=quiet).path
    source = textwrap.dedent(inspect.getsource(tensorrt_backend.TensorRTBackend._run))
    assert "execute_async_v3" in source
    namespace: dict = {}
    exec(compile(source.replace("execute_async_v3", "execute_async_v4"), "renamed _run", "exec"), vars(tensorrt_backend), namespace)
    monkeypatch.setattr(tensorrt_backend.TensorRTBackend, "_run", namespace["_run"])
    with open_backend(engine, cuda_binding="cuda-python") as backend, pytest.raises(AttributeError, match="execute_async_v4"):
        backend(np.zeros((1, 3, 32, 32), np.float32))
    used = stack.records()["tensorrt"]
    assert bindings.missing_names(used, bindings.tensorrt_names(V11_4)) == ["IExecutionContext.execute_async_v4"], readable(used)


def test_keyword_arguments_we_pass_are_recorded(recorded):
    """Calls with keywords are recorded as Class.method(keyword), checked like any other name above."""
    assert "IBuilderConfig.set_timing_cache(ignore_mismatch)" in recorded["10.3-strong"]["tensorrt"]


# ---------------------------------------------------------------- the fakes refuse what the real libraries refuse


def trt_objects(monkeypatch, version):
    stack = fakes.install(monkeypatch, version)
    trt, binding = stack.trt, open_binding(0, "pycuda")
    binding.push()
    monkeypatch.setattr(stack, "binding", binding, raising=False)
    return stack, trt


def close(stack):
    stack.binding.pop()
    stack.binding.release()


@pytest.mark.parametrize("flag", ["FP16", "INT8"])
def test_fake_refuses_precision_flags_on_a_strongly_typed_network(tmp_path, monkeypatch, flag):
    """TensorRT 10: `Error Code 3: API Usage Error (Parameter check failed, condition: !config.getFlag(BuilderFlag::kFP16))`."""
    stack, trt = trt_objects(monkeypatch, V10_13)
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    for strongly_typed in (True, False):
        network = builder.create_network((1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)) if strongly_typed else 0)
        assert trt.OnnxParser(network, trt.Logger()).parse_from_file(str(tiny_onnx(tmp_path / "m.onnx", batch=1)))
        config = builder.create_builder_config()
        config.set_flag(getattr(trt.BuilderFlag, flag))
        built = builder.build_serialized_network(network, config)
        assert (built is None) == strongly_typed
    assert stack.controls.errors == [fakes.STRONG_TYPING_ERROR.format(flag=flag)]
    close(stack)


def test_fake_tensorrt_11_lacks_the_weak_typing_api(monkeypatch):
    stack, trt = trt_objects(monkeypatch, V11_4)
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    config = builder.create_builder_config()
    owners = {"BuilderFlag": trt.BuilderFlag, "IBuilderConfig": config, "Builder": builder}
    for name in fakes.REMOVED_IN_11:
        owner, _, attribute = name.rpartition(".")
        with pytest.raises(AttributeError):
            getattr(owners[owner] if owner else trt, attribute)
    assert fakes.REMOVED_IN_11[0] in stack.records()["tensorrt"]  # touched, so recorded even though missing
    close(stack)


def test_fake_refuses_shapes_outside_the_profile_and_incomplete_execution(tmp_path, monkeypatch):
    stack = fakes.install(monkeypatch, V11_4)
    engine = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(batch=BatchProfile(2, 4, 8)), log=quiet).path
    trt, binding = stack.trt, open_binding(0, "cuda-python")
    with current(binding):
        context = trt.Runtime(trt.Logger()).deserialize_cuda_engine(Path(engine).read_bytes()).create_execution_context()
        stream = binding.stream()
        assert not context.execute_async_v3(binding.stream_handle(stream))  # no shape, no address
        assert not context.set_input_shape("images", (1, 3, 32, 32)) and not context.set_input_shape("images", (9, 3, 32, 32))
        assert not context.set_input_shape("images", (4, 3, 31, 32)) and context.set_input_shape("images", (4, 3, 32, 32))
        pointer = binding.alloc(4 * 3 * 32 * 32 * 4)
        context.set_tensor_address("images", pointer)
        assert not context.execute_async_v3(binding.stream_handle(stream))  # the output address is missing
        binding.free(pointer)
        binding.destroy_stream(stream)
    binding.release()
    assert len(stack.controls.errors) == 5


def test_fake_refuses_a_foreign_timing_cache(monkeypatch):
    stack, trt = trt_objects(monkeypatch, V10_3)
    config = trt.Builder(trt.Logger()).create_builder_config()
    assert config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    assert not config.set_timing_cache(config.create_timing_cache(b"from elsewhere"), ignore_mismatch=False)
    assert config.set_timing_cache(config.create_timing_cache(b"from elsewhere"), ignore_mismatch=True)
    close(stack)


@pytest.mark.parametrize("name", ["pycuda", "cuda-python"])
def test_fake_cuda_refuses_copies_outside_a_context_and_to_freed_pointers(monkeypatch, name):
    stack = fakes.install(monkeypatch, V10_3)
    binding = open_binding(0, name)
    assert isinstance(binding, PyCudaBinding if name == "pycuda" else CudaPythonBinding)
    with current(binding):
        host, pointer, stream = binding.pinned((4,), np.float32), binding.alloc(16), binding.stream()
    errors = (ClcaDeployError, sys_modules_error(name))
    with pytest.raises(errors):
        binding.copy_to_device(pointer, host, stream)  # no context pushed on this thread
    with current(binding):
        binding.free(pointer)
        with pytest.raises(errors):
            binding.copy_to_device(pointer, host, stream)
        with pytest.raises(errors):
            binding.copy_to_host(host, 0xDEAD, stream)
        with pytest.raises(errors):
            binding.copy_to_device(binding.alloc(16), np.zeros(4, np.float32), stream)  # not page-locked
        assert stack.gpu.live()["device_allocations"] == 1  # the one just allocated, not freed: counted
    binding.release()


def sys_modules_error(name):
    import sys

    return sys.modules["pycuda.driver"].LogicError if name == "pycuda" else ClcaDeployError


@pytest.mark.parametrize("name", ["pycuda", "cuda-python"])
def test_fake_results_arrive_only_at_synchronize(monkeypatch, name):
    stack = fakes.install(monkeypatch, V10_3)
    binding = open_binding(0, name)
    with current(binding):
        source, target = binding.pinned((4,), np.float32), binding.pinned((4,), np.float32)
        source[...] = [1, 2, 3, 4]
        pointer, stream = binding.alloc(16), binding.stream()
        binding.copy_to_device(pointer, source, stream)
        binding.copy_to_host(target, pointer, stream)
        assert not np.array_equal(target, source)  # queued, not done
        binding.synchronize(stream)
        np.testing.assert_array_equal(target, source)
        binding.free(pointer)
        binding.free_pinned(source)
        binding.free_pinned(target)
        binding.destroy_stream(stream)
        del stream
    binding.release()
    assert stack.gpu.live() == {key: 0 for key in stack.gpu.live()}


@pytest.fixture
def engine(tmp_path, monkeypatch):
    fakes.install(monkeypatch, V10_3)
    return build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(batch=BatchProfile(1, 4, 8)), log=quiet).path


@pytest.mark.parametrize("name", ["pycuda", "cuda-python"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the stale buffer holds huge values
def test_fake_shows_a_backend_that_reads_before_synchronizing(engine, monkeypatch, name):
    binding_class = PyCudaBinding if name == "pycuda" else CudaPythonBinding
    monkeypatch.setattr(binding_class, "synchronize", lambda self, stream: None)
    with open_backend(engine, cuda_binding=name) as backend:
        batch = np.ones((2, 3, 32, 32), np.float32)
        assert not np.allclose(backend(batch), expected_logits(batch, 15))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # mixed-up buffers hold huge values
def test_fake_shows_a_backend_without_its_lock(engine, monkeypatch):
    """Without the lock, calls from several threads mix shapes, buffers and stream work: some come back wrong."""
    import contextlib

    stack = fakes.install(monkeypatch, V10_3)
    stack.gpu.delay = 1e-3
    wrong = []
    with open_backend(engine, cuda_binding="cuda-python") as backend:
        backend._lock = contextlib.nullcontext()

        def work(seed):
            for count in (1, 6, 3, 8):
                batch = np.random.default_rng(seed * 10 + count).standard_normal((count, 3, 32, 32)).astype(np.float32)
                try:
                    if not np.allclose(backend(batch), expected_logits(batch, 15), rtol=1e-5, atol=1e-6):
                        wrong.append(seed)
                except Exception:  # noqa: BLE001 (a refused call is a wrong result too)
                    wrong.append(seed)

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        backend._lock = threading.Lock()
    assert wrong
