"""Stores of many entries (issue 30): a store from arrays, indexes sized by N, memory-mapped indexes shared
by worker processes, parameters recorded as read back from the index, GPU fallbacks (faiss's GPU calls made
to fail as they fail on a GPU), exact search and subsets streamed in blocks, PQ re-ranked from the keys."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from datastore import Datastore, IndexFallbackWarning, subset_datastore, write_datastore
from datastore import index as ix
from datastore.testing import mixture_keys

faiss = pytest.importorskip("faiss")

COUNT, DIM = 6_000, 32
IN_FORCE = ("type", "nlist", "nprobe", "code_size", "efSearch", "count")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


@pytest.fixture(scope="module")
def keys():
    return mixture_keys(COUNT, DIM, clusters=32, seed=0)


@pytest.fixture(scope="module")
def values():
    return np.random.default_rng(1).integers(0, 500, COUNT)


def _exact(keys, queries, k):
    d = ((queries[:, None, :] - keys.astype(np.float32)[None]) ** 2).sum(-1)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


# ------------------------------------------------------------------------------- a store from arrays


def test_a_store_written_from_arrays_searches_its_keys(tmp_path, keys, values):
    path = tmp_path / "keys.npy"
    np.save(path, keys.astype(np.float32))  # a float32 .npy: memory-mapped, copied as float16 in blocks
    out = write_datastore(tmp_path / "ds", path, values, rows=np.arange(COUNT) // 10,
                          positions=np.arange(COUNT) % 10, meta={"task": "demo", "data": {"source": "synthetic"}},
                          factory="Flat", block=1_000)
    store = Datastore.load(out)
    assert store.count == COUNT and store.dim == DIM and store.task == "demo"
    np.testing.assert_array_equal(store.keys, keys)
    np.testing.assert_array_equal(store.values, values)
    np.testing.assert_array_equal(store.rows, np.arange(COUNT) // 10)
    assert store.meta["build"]["from_arrays"] and store.meta["data"] == {"source": "synthetic"}
    assert store.meta["knn"]["temperature"] > 0  # from the keys' scale
    assert store.meta["model"] is None
    from datastore.testing import tiny_t5

    Datastore.load(out, model=tiny_t5(50))  # no fingerprint recorded: no model to check against
    found = store.retriever().search(torch.from_numpy(keys[:50].astype(np.float32)), 1)
    np.testing.assert_array_equal(found.indices[:, 0].numpy(), np.arange(50))
    np.testing.assert_array_equal(found.values[:, 0].numpy(), values[:50])


def test_write_datastore_default_index_is_sized_by_count(tmp_path, keys, values):
    out = write_datastore(tmp_path / "ds", keys, values)
    meta = Datastore.load(out).meta["index"]
    assert meta["requested_factory"] == "auto" and meta["factory"] == ix.sized_factory(COUNT, DIM)
    assert meta["nlist"] * 39 <= COUNT and meta["nprobe"] == ix.DEFAULT_NPROBE and not meta["fallbacks"]
    assert meta["trained_on"] == ix.default_train_size(meta["factory"], COUNT)


def test_write_datastore_refuses_what_cannot_be_a_store(tmp_path, keys, values):
    with pytest.raises(ValueError, match="values has 10 entries"):
        write_datastore(tmp_path / "a", keys, values[:10])
    bad = keys.astype(np.float32)
    bad[7, 3] = 1e6
    with pytest.raises(ValueError, match="entry 7 is not finite in float16"):
        write_datastore(tmp_path / "b", bad, values, factory="Flat")
    write_datastore(tmp_path / "c", keys, values, factory="Flat")
    with pytest.raises(FileExistsError):
        write_datastore(tmp_path / "c", keys, values, factory="Flat")


def test_sized_factory_follows_faiss_guidance():
    assert ix.sized_factory(260_000, 256) == "IVF2048,SQfp16"  # the measured default of the shipped stores
    assert ix.sized_factory(100_000, 256) == "IVF1024,SQfp16"
    assert ix.sized_factory(1_000_000, 256) == "IVF4096,SQfp16"
    assert ix.sized_factory(10_000_000, 1024, "PQ") == "IVF16384,PQ256"
    assert ix.sized_factory(300_000_000, 256) == "IVF65536_HNSW32,SQfp16"
    assert ix.sized_factory(2_000, 256) == "IVF51,SQfp16"  # >= 39 keys per list
    for count in (10_000, 300_000, 3_000_000, 30_000_000):
        nlist = int(ix.sized_factory(count, 256).split(",")[0][3:].split("_")[0])
        assert 2 * np.sqrt(count) <= nlist <= 16 * np.sqrt(count)
    assert ix.default_train_size("IVF4096_HNSW32,SQfp16", 10 ** 7) == 64 * 4096


def test_default_nprobe_grows_with_the_list_count():
    """10 up to 2,048 lists (the shipped stores' IVF2048 keep theirs), then 10 * (nlist / 2048)^(1/3)."""
    nprobes = {factory: ix.default_params(factory)["nprobe"] for factory in (
        "IVF51,SQfp16", "IVF1024,SQfp16", "IVF2048,SQfp16", "IVF4096,SQfp16", "IVF8192,PQ64",
        "IVF16384,SQfp16", "IVF65536_HNSW32,SQfp16")}
    assert list(nprobes.values()) == [10, 10, 10, 13, 16, 20, 32]
    assert ix.default_params(ix.sized_factory(260_000, 256)) == {"nprobe": 10}
    assert ix.default_params("IVF65536_HNSW32,SQfp16")["ef_search"] == ix.DEFAULT_EF_SEARCH
    assert "nprobe" not in ix.default_params("HNSW32") and ix.default_params("Flat") == {}


# ------------------------------------------------------------------- recorded is what is in force


@pytest.mark.parametrize("factory, options", [
    ("auto", {}), ("IVF64,Flat", {"nprobe": 7}), ("IVF32_HNSW8,SQfp16", {"ef_search": 40}),
    ("HNSW16", {"ef_search": 24}), ("Flat", {}), ("IVF32,PQ8", {}), ("auto,PQ", {"nprobe": 3}),
])
def test_datastore_json_records_what_the_loaded_index_reports(tmp_path, keys, values, factory, options):
    with warnings.catch_warnings():
        warnings.simplefilter("error", IndexFallbackWarning)
        out = write_datastore(tmp_path / "ds", keys, values, factory=factory, **options)
    store = Datastore.load(out)
    recorded = json.loads((out / "datastore.json").read_text())["index"]
    retriever = store.retriever()
    loaded = retriever.state
    assert {name: recorded.get(name) for name in IN_FORCE} == {name: loaded.get(name) for name in IN_FORCE}
    assert loaded["mapped"] and not loaded["on_gpu"] and not loaded["fallbacks"]
    assert recorded["built_on_gpu"] is False and recorded["fallbacks"] == []
    if "nprobe" in options:
        assert recorded["nprobe"] == options["nprobe"]
    if "ef_search" in options:
        assert recorded["efSearch"] == options["ef_search"]
    assert recorded["rerank"] == (ix.DEFAULT_RERANK if "PQ" in factory else None)
    assert recorded["bytes"] == (out / "index.faiss").stat().st_size


def test_a_parameter_the_index_has_no_place_for_is_a_warning_and_not_recorded(tmp_path, keys, values):
    with pytest.warns(IndexFallbackWarning, match="nprobe=5 not applied: the IndexFlat index has no nprobe"):
        out = write_datastore(tmp_path / "ds", keys, values, factory="Flat", nprobe=5)
    meta = Datastore.load(out).meta["index"]
    assert meta["nprobe"] is None and "nprobe=5 not applied" in meta["fallbacks"][0]


def test_too_few_keys_for_the_lists_asked_for_is_a_warning(tmp_path, keys, values):
    with pytest.warns(IndexFallbackWarning, match="too few to train 'IVF1024,Flat'"):
        out = write_datastore(tmp_path / "ds", keys, values, factory="IVF1024,Flat")
    meta = Datastore.load(out).meta["index"]
    assert meta["factory"] == f"IVF{COUNT // 39},Flat" and meta["nlist"] == COUNT // 39


# ------------------------------------------------------------------------------ simulated GPUs


def _fake_gpus(monkeypatch, count=1, to_gpu=None, to_cpu=None):
    """faiss-cpu dressed as faiss-gpu with ``count`` GPUs whose cloner is ``to_gpu``."""
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: count, raising=False)
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", to_gpu, raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", to_cpu or (lambda index: index), raising=False)


SMEM = ("Error in void faiss::gpu::GpuIndexIVFPQ::verifyPQSettings_() const at faiss/gpu/GpuIndexIVFPQ.cu:"
        "Error: 'requiredSmemSize <= getMaxSharedMemPerBlock(config_.device)' failed: Device 0 has 49152 bytes "
        "of shared memory, while 8 bits per code and 64 sub-quantizers requires 65536 bytes. Consider "
        "useFloat16LookupTables and/or reduce parameters")


def test_pq_refused_by_the_gpu_is_a_warning_and_built_on_gpu_is_false(tmp_path, monkeypatch, keys, values):
    def refuse(index, co=None, ngpu=-1):
        raise RuntimeError(SMEM)

    _fake_gpus(monkeypatch, to_gpu=refuse)
    with pytest.warns(IndexFallbackWarning, match="shared memory.*stays on the CPU; use fewer PQ bytes"):
        out = write_datastore(tmp_path / "ds", keys, values, factory="IVF32,PQ8")
    meta = Datastore.load(out).meta["index"]
    assert meta["built_on_gpu"] is False and "shared memory" in meta["fallbacks"][0]
    assert meta["type"] == "IndexIVFPQ" and meta["count"] == COUNT


def test_pq_code_size_without_a_gpu_kernel_is_a_warning_naming_the_sizes_it_has(tmp_path, monkeypatch, keys, values):
    """``auto,PQ`` at d 1,024 is PQ256; faiss-gpu's IVF-PQ has no kernel for 256-byte codes."""
    def refuse(index, co=None, ngpu=-1):
        raise RuntimeError("Error in void faiss::gpu::GpuIndexIVFPQ::verifyPQSettings_() const at faiss/gpu/"
                           "GpuIndexIVFPQ.cu:589: Error: 'ivfpqConfig_.interleavedLayout || IVFPQ::"
                           "isSupportedPQCodeLength(subQuantizers_)' failed: Number of bytes per encoded vector / "
                           "sub-quantizers (256) is not supported")

    _fake_gpus(monkeypatch, to_gpu=refuse)
    with pytest.warns(IndexFallbackWarning, match=r"\(256\) is not supported\): it stays on the CPU; faiss-gpu's "
                                                  r"IVF-PQ codes take .* 'auto,PQ64'"):
        out = write_datastore(tmp_path / "ds", keys, values, factory="IVF32,PQ8")
    assert Datastore.load(out).meta["index"]["built_on_gpu"] is False


def test_gpu_pq_asks_for_float16_lookup_tables(monkeypatch):
    class Options:
        useFloat16 = False

    seen = []
    monkeypatch.setattr(faiss, "GpuMultipleClonerOptions", Options, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", lambda index, co=None, ngpu=-1: seen.append(co) or index,
                        raising=False)
    index, on_gpu = ix.to_gpu(faiss.index_factory(DIM, "IVF16,PQ8"))
    assert on_gpu and seen[0].useFloat16 is True


def test_an_index_built_on_the_first_gpus_only_asks_faiss_for_those(monkeypatch, keys):
    asked = []
    _fake_gpus(monkeypatch, count=4, to_gpu=lambda index, co=None, ngpu=-1: asked.append(ngpu) or index)
    meta = ix.build_index(keys, None, "IVF16,Flat", gpus=1, progress=False)
    assert asked == [1] and meta["built_on_gpu"] is True
    ix.build_index(keys, None, "IVF16,Flat", progress=False)
    assert asked == [1, -1]


def test_multi_gpu_replicas_all_search_with_the_recorded_nprobe(tmp_path, monkeypatch, keys, values):
    """Several GPUs: an IndexReplicas (here of CPU clones); nprobe must reach every replica and be recorded
    as they report it."""
    made = []

    def replicate(index, co=None, ngpu=-1):
        replicas = faiss.IndexReplicas()
        clones = [faiss.clone_index(index) for _ in range(2)]
        for clone in clones:
            replicas.addIndex(clone)
        made.append((replicas, clones))  # the clones must outlive this call
        return replicas

    def first_replica(index):
        return faiss.clone_index(faiss.downcast_index(index).at(0))

    _fake_gpus(monkeypatch, count=2, to_gpu=replicate, to_cpu=first_replica)
    out = write_datastore(tmp_path / "ds", keys, values, factory="IVF32,SQfp16", nprobe=6)
    meta = Datastore.load(out).meta["index"]
    assert meta["built_on_gpu"] is True and meta["nprobe"] == 6 and meta["replicas"] == 2
    retriever = Datastore.load(out).retriever(nprobe=5)
    assert retriever.state["on_gpu"] and retriever.state["nprobe"] == 5
    assert [ix._ivf(part).nprobe for part in ix.replicas(retriever.index)] == [5, 5]
    found = retriever.search(torch.from_numpy(keys[:20].astype(np.float32)), 1)
    np.testing.assert_array_equal(found.indices[:, 0].numpy(), np.arange(20))


def test_gpu_out_of_memory_at_load_searches_the_mapped_index_on_the_cpu(tmp_path, monkeypatch, keys, values):
    out = write_datastore(tmp_path / "ds", keys, values, factory="IVF32,SQfp16", use_gpu=False)

    def out_of_memory(index, co=None, ngpu=-1):
        raise RuntimeError("Error in virtual void* faiss::gpu::StandardGpuResourcesImpl::allocMemory(...): "
                           "Error: 'err == cudaSuccess' failed: StandardGpuResources: alloc fail type "
                           "IVFLists dev 0 space Device stream 0x0 size 1073741824 bytes (cudaMalloc error "
                           "out of memory [2])")

    _fake_gpus(monkeypatch, to_gpu=out_of_memory)
    with pytest.warns(IndexFallbackWarning, match="out of memory.*stays on the CPU; free GPU memory"):
        retriever = Datastore.load(out).retriever()
    assert not retriever.state["on_gpu"] and retriever.state["mapped"] and retriever.state["nprobe"] == 10
    assert "GPU" not in retriever.description and "mapped" in retriever.description
    found = retriever.search(torch.from_numpy(keys[:20].astype(np.float32)), 1)
    np.testing.assert_array_equal(found.indices[:, 0].numpy(), np.arange(20))


def test_faiss_without_gpu_support_on_a_machine_with_gpus_is_a_warning(tmp_path, monkeypatch, keys, values):
    monkeypatch.delattr(faiss, "StandardGpuResources", raising=False)
    monkeypatch.setattr(ix, "machine_gpus", lambda: 2)
    with pytest.warns(IndexFallbackWarning, match="2 CUDA GPU.*no GPU support.*faiss-gpu"):
        out = write_datastore(tmp_path / "ds", keys, values, factory="IVF32,SQfp16")
    meta = Datastore.load(out).meta["index"]
    assert meta["built_on_gpu"] is False and "faiss-gpu" in meta["fallbacks"][0]
    with warnings.catch_warnings():  # use_gpu=False: the CPU is what was asked for, no warning
        warnings.simplefilter("error", IndexFallbackWarning)
        write_datastore(tmp_path / "ds2", keys, values, factory="IVF32,SQfp16", use_gpu=False)


# ------------------------------------------------ simulated GPU indexes (what faiss-gpu hands back)


class _GpuIndex:
    """A stand-in for faiss-gpu's index proxies as datastore.index sees them: a ``Gpu*`` type name, the
    ``IndexIVFInterface`` fields (``nlist``, ``nprobe``, ``quantizer``, itself a GPU flat index) but no
    ``code_size`` and no inverted lists; ``extract_index_ivf`` refuses it (it is no ``IndexIVF``). It trains,
    adds and searches through the CPU index it wraps; ``fail`` ("train" or "add") raises faiss's GPU
    out-of-memory error there instead."""

    def __init__(self, cpu, fail=None):
        self._cpu, self._fail = cpu, fail
        ivf = faiss.extract_index_ivf(cpu) if "IVF" in type(cpu).__name__ else None
        self._ivf = faiss.downcast_index(ivf) if ivf is not None else None
        if self._ivf is not None:
            self.nlist = int(self._ivf.nlist)
            self.quantizer = _gpu_type(faiss.downcast_index(self._ivf.quantizer))

    nprobe = property(lambda self: self._ivf.nprobe, lambda self, value: setattr(self._ivf, "nprobe", value))
    ntotal = property(lambda self: self._cpu.ntotal)
    is_trained = property(lambda self: self._cpu.is_trained)
    d = property(lambda self: self._cpu.d)

    def train(self, x):
        if self._fail == "train":
            raise RuntimeError(GPU_OOM)
        self._cpu.train(x)

    def add(self, x):
        if self._fail == "add":
            raise RuntimeError(GPU_OOM)
        self._cpu.add(x)

    def search(self, x, k):
        return self._cpu.search(x, k)


class _Replicas:
    """faiss's IndexReplicas over GPU indexes (one per GPU), as the cloner returns it."""

    def __init__(self, parts):
        self._parts = parts

    def at(self, i):
        return self._parts[i]

    def count(self):
        return len(self._parts)

    ntotal = property(lambda self: self._parts[0].ntotal)

    def search(self, x, k):
        return self._parts[0].search(x, k)


_Replicas.__name__ = "IndexReplicas"


def _gpu_type(cpu, fail=None):
    return type(f"Gpu{type(cpu).__name__}", (_GpuIndex,), {})(cpu, fail)


GPU_OOM = ("Error in virtual void* faiss::gpu::StandardGpuResourcesImpl::allocMemory(const faiss::gpu::AllocRequest&) "
           "at faiss/gpu/StandardGpuResources.cpp:530: Error: 'err == cudaSuccess' failed: StandardGpuResources: "
           "alloc fail type IVFLists dev 0 space Device stream 0x5581 size 536870912 bytes (cudaMalloc error out of "
           "memory [2])")
NOT_ON_GPU = ("Error in virtual faiss::Index* faiss::gpu::ToGpuCloner::clone_Index(const faiss::Index*) at "
              "faiss/gpu/GpuCloner.cpp:229: This index type is not implemented on GPU.")


def _simulated_gpus(monkeypatch, count=1, fail=None):
    """faiss-cpu dressed as faiss-gpu whose cloner returns :class:`_GpuIndex` stand-ins (an IndexReplicas of
    them for ``count`` > 1) and whose GpuParameterSpace sets them; returns the parameter-space calls."""
    calls = []
    downcast = faiss.downcast_index

    class GpuParameterSpace:
        def set_index_parameter(self, index, name, value):
            assert isinstance(index, _GpuIndex), "GpuParameterSpace takes GPU indexes only"
            calls.append((type(index).__name__, name, value))
            setattr(index, name, value)

    def to_gpu(index, co=None, ngpu=-1):
        index = downcast(index)
        if "HNSW" in type(index).__name__ and "IVF" not in type(index).__name__:
            raise RuntimeError(NOT_ON_GPU)
        parts = [_gpu_type(faiss.clone_index(index), fail) for _ in range(count)]  # copies, as on GPUs
        return parts[0] if count == 1 else _Replicas(parts)

    def to_cpu(index):
        index = index.at(0) if isinstance(index, _Replicas) else index
        return index._cpu if isinstance(index, _GpuIndex) else index

    _fake_gpus(monkeypatch, count=count, to_gpu=to_gpu, to_cpu=to_cpu)
    monkeypatch.setattr(faiss, "GpuParameterSpace", GpuParameterSpace, raising=False)
    monkeypatch.setattr(faiss, "downcast_index",
                        lambda index: index if isinstance(index, (_GpuIndex, _Replicas)) else downcast(index))
    return calls


@pytest.mark.parametrize("factory", ["IVF32,PQ8", "IVF32,Flat", "IVF32,SQfp16"])
def test_an_index_built_on_a_gpu_records_what_the_loaded_index_reports(tmp_path, monkeypatch, keys, values, factory):
    """A GPU index has no code_size and a GPU quantizer: datastore.json records the stored index as it is
    loaded (the CPU's view of the file), and the nprobe set through GpuParameterSpace."""
    calls = _simulated_gpus(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IndexFallbackWarning)
        out = write_datastore(tmp_path / "ds", keys, values, factory=factory, nprobe=7)
    recorded = json.loads((out / "datastore.json").read_text())["index"]
    assert recorded["built_on_gpu"] is True and ("GpuIndex" + factory.split(",")[0][:3]) in calls[0][0]
    assert calls == [(calls[0][0], "nprobe", 7)]
    monkeypatch.undo()  # the same store on a machine without GPUs
    loaded = Datastore.load(out).retriever().state
    assert {name: recorded.get(name) for name in (*IN_FORCE, "quantizer")} == \
        {name: loaded.get(name) for name in (*IN_FORCE, "quantizer")}
    assert recorded["code_size"] == {"IVF32,PQ8": 8, "IVF32,Flat": 4 * DIM, "IVF32,SQfp16": 2 * DIM}[factory]


def test_gpu_replicas_get_nprobe_through_the_gpu_parameter_space(tmp_path, monkeypatch, keys, values):
    out = write_datastore(tmp_path / "ds", keys, values, factory="IVF32,SQfp16", use_gpu=False)
    calls = _simulated_gpus(monkeypatch, count=2)
    retriever = Datastore.load(out).retriever(nprobe=9)
    assert retriever.state["on_gpu"] and retriever.state["replicas"] == 2 and retriever.state["nprobe"] == 9
    assert calls == [("GpuIndexIVFScalarQuantizer", "nprobe", 9)] * 2
    assert [part.nprobe for part in ix.replicas(retriever.index)] == [9, 9]
    assert retriever.state["type"] == "GpuIndexIVFScalarQuantizer" and not retriever.state["fallbacks"]
    found = retriever.search(torch.from_numpy(keys[:20].astype(np.float32)), 1)
    np.testing.assert_array_equal(found.indices[:, 0].numpy(), np.arange(20))


@pytest.mark.parametrize("step", ["train", "add"])
def test_gpu_out_of_memory_while_building_builds_on_the_cpu(tmp_path, monkeypatch, keys, values, step):
    _simulated_gpus(monkeypatch, fail=step)
    with pytest.warns(IndexFallbackWarning, match=f"out of GPU memory while .*{step}.*built on the CPU"):
        out = write_datastore(tmp_path / "ds", keys, values, factory="IVF32,SQfp16", nprobe=4)
    monkeypatch.undo()
    store = Datastore.load(out)
    meta = store.meta["index"]
    assert meta["built_on_gpu"] is False and meta["count"] == COUNT and meta["nprobe"] == 4
    assert "out of memory" in meta["fallbacks"][0] and meta["type"] == "IndexIVFScalarQuantizer"
    found = store.retriever().search(torch.from_numpy(keys[:20].astype(np.float32)), 1)
    np.testing.assert_array_equal(found.indices[:, 0].numpy(), np.arange(20))


def test_an_index_type_without_a_gpu_version_is_built_and_searched_on_the_cpu(tmp_path, monkeypatch, keys, values):
    _simulated_gpus(monkeypatch)
    with pytest.warns(IndexFallbackWarning, match="not implemented on GPU.*stays on the CPU; use an index type faiss "
                                                  "has on GPUs"):
        out = write_datastore(tmp_path / "ds", keys, values, factory="HNSW16")
    assert Datastore.load(out).meta["index"]["built_on_gpu"] is False
    with pytest.warns(IndexFallbackWarning, match="not implemented on GPU"):
        retriever = Datastore.load(out).retriever()
    assert retriever.state["mapped"] and not retriever.state["on_gpu"] and retriever.state["type"] == "IndexHNSWFlat"


# --------------------------------------------------------------- memory-mapped, shared by workers


def _worker(path, mmap, barrier, results):
    """What a ``--jobs`` worker does with a store (t2m.decoding.pool: Datastore.load, then its retriever),
    then a search over every IVF list; reports its anonymous (private) memory growth and the resident and
    proportional memory of the index file's mapping."""
    import faiss as f

    f.omp_set_num_threads(1)
    before = _memory()
    store = Datastore.load(path)
    retriever = store.retriever(nprobe=store.meta["index"]["nlist"], mmap=mmap)
    retriever.search(torch.from_numpy(np.asarray(store.keys[:64], dtype=np.float32)), 16)
    barrier.wait()  # both workers hold the index now
    after = _memory()
    barrier.wait()
    results.put({"anonymous_mb": after["anonymous"] - before["anonymous"], "index_rss_mb": after["index_rss"],
                 "index_pss_mb": after["index_pss"], "mapped": retriever.state["mapped"]})


def _memory() -> dict[str, float]:
    found = {"anonymous": 0.0, "index_rss": 0.0, "index_pss": 0.0}
    with open("/proc/self/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Anonymous:"):
                found["anonymous"] = int(line.split()[1]) / 1024
    current = None
    with open("/proc/self/smaps") as handle:
        for line in handle:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:
                current = fields[-1] if len(fields) >= 6 else None
            elif current and current.endswith("index.faiss") and fields[0] in ("Rss:", "Pss:"):
                found["index_rss" if fields[0] == "Rss:" else "index_pss"] += int(fields[1]) / 1024
    return found


def _two_workers(path, mmap):
    from datastore.testing import run_in_two_processes

    return run_in_two_processes(_worker, (str(path), mmap), timeout=300)


@pytest.mark.skipif(not hasattr(faiss, "IO_FLAG_MMAP_IFC"), reason="faiss < 1.11 maps IVF lists only")
def test_two_workers_share_one_memory_mapped_index(tmp_path):
    count, dim = 150_000, 64
    out = write_datastore(tmp_path / "ds", mixture_keys(count, dim, clusters=64), np.zeros(count, dtype=np.int64),
                          factory="IVF256,SQfp16")
    index_mb = (out / "index.faiss").stat().st_size / 2 ** 20
    assert index_mb > 15
    mapped = _two_workers(out, mmap=True)
    print(f"index {index_mb:.1f} MB; mapped workers: {mapped}")
    for worker in mapped:
        assert worker["mapped"]
        assert worker["anonymous_mb"] < 0.15 * index_mb, (worker, index_mb)  # no private copy
        assert worker["index_rss_mb"] > 0.8 * index_mb  # every list was searched
    # the pages are the page cache's, shared: the two workers' proportional shares make one index
    assert sum(w["index_pss_mb"] for w in mapped) == pytest.approx(index_mb, rel=0.15)
    read = _two_workers(out, mmap=False)  # the old way: each worker reads its own copy
    print(f"workers reading the file: {read}")
    assert all(w["anonymous_mb"] > 0.8 * index_mb and not w["mapped"] for w in read)


# ----------------------------------------------------------------------- blocks and re-ranking


def test_streamed_exact_search_is_exact_search(keys):
    queries = mixture_keys(40, DIM, clusters=32, seed=5).astype(np.float32)
    streamed = ix.StreamedExactIndex(keys, block=997)
    distances, ids = streamed.search(queries, 8)
    np.testing.assert_array_equal(ids, _exact(keys, queries, 8))
    assert np.all(np.diff(distances, axis=1) >= 0)
    assert isinstance(ix.exact_index(keys, use_gpu=False, max_bytes=1_000), ix.StreamedExactIndex)
    assert not isinstance(ix.exact_index(keys, use_gpu=False), ix.StreamedExactIndex)
    few = ix.StreamedExactIndex(keys[:5], block=3)
    _, ids = few.search(queries[:2], 8)
    assert (ids[:, 5:] == -1).all() and sorted(ids[0, :5]) == list(range(5))


def test_pq_shortlist_reranked_from_the_keys_is_exact_within_it(tmp_path, keys, values):
    out = write_datastore(tmp_path / "ds", keys, values, factory="IVF16,PQ8", nprobe=16)
    store = Datastore.load(out)
    queries = mixture_keys(60, DIM, clusters=32, seed=7).astype(np.float32)
    truth = _exact(keys, queries, 8)
    reranked = store.retriever().search(torch.from_numpy(queries), 8)
    plain = store.retriever(rerank=0).search(torch.from_numpy(queries), 8)
    recall = [np.mean([len(set(f) & set(t)) / 8 for f, t in zip(found.indices.numpy(), truth)])
              for found in (reranked, plain)]
    assert recall[0] > recall[1] and recall[0] > 0.9, recall
    exact_d = ((queries[:, None, :] - keys.astype(np.float32)[reranked.indices.numpy()]) ** 2).sum(-1)
    np.testing.assert_allclose(reranked.distances.numpy(), exact_d, rtol=1e-4, atol=1e-4)
    assert f"re-ranked from {ix.DEFAULT_RERANK}k" in store.retriever().description


def test_subset_is_copied_in_blocks(tmp_path, keys, values):
    source = write_datastore(tmp_path / "full", keys, values, rows=np.arange(COUNT) // 3, factory="Flat")
    subset_datastore(source, tmp_path / "part", rows=range(0, 2000, 2), block=333, progress=False)
    part = Datastore.load(tmp_path / "part")
    picks = np.flatnonzero((np.arange(COUNT) // 3 < 2000) & ((np.arange(COUNT) // 3) % 2 == 0))
    np.testing.assert_array_equal(part.keys, keys[picks])
    np.testing.assert_array_equal(part.values, values[picks])
    assert part.meta["build"]["subset_rows"] == 1000 and part.meta["index"]["factory"] == "Flat"


# ------------------------------------------------------------------------------ larger models


def test_model_fingerprint_samples_tensors_of_more_than_2_24_values():
    """MolT5-base's 32,128 x 768 embedding has more values than float32 counts exactly (the sampled positions
    rounded up to one past the end: the build failed); smaller tensors are sampled as before, so the
    fingerprints recorded in existing stores still match."""
    from datastore.store import _SAMPLES_PER_TENSOR, model_fingerprint
    from datastore.testing import tiny_t5

    model = tiny_t5(50)
    digest = __import__("hashlib").sha256()
    for name, tensor in sorted(model.state_dict().items()):  # the sampling before the fix
        flat = tensor.reshape(-1)
        if flat.numel() > _SAMPLES_PER_TENSOR:
            flat = flat[torch.linspace(0, flat.numel() - 1, _SAMPLES_PER_TENSOR).long()]
        digest.update(name.encode())
        digest.update(json.dumps(list(tensor.shape)).encode())
        digest.update(flat.to(torch.float16).numpy().tobytes())
    assert model_fingerprint(model)["weights_sha256"] == digest.hexdigest()
    big = torch.zeros(32_128 * 768, dtype=torch.float16)
    model.register_buffer("embedding_sized", big)
    first = model_fingerprint(model)
    big[-1] = 1.0  # the last value is sampled
    assert model_fingerprint(model)["weights_sha256"] != first["weights_sha256"]


def test_a_mixture_fitted_to_keys_draws_keys_like_them(tmp_path):
    """fit_mixture recovers a known mixture's spreads and weights; the fitted one saves, loads and draws."""
    from datastore.testing import Mixture, fit_mixture

    rng = np.random.default_rng(0)
    truth = Mixture(rng.standard_normal((8, DIM)) * 4, [0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05],
                    [0.2, 0.3, 0.4, 0.5, 0.2, 0.3, 0.4, 0.5])
    keys = truth.draw(20_000, np.random.default_rng(1))
    fitted = fit_mixture(keys, clusters=8, sample=20_000)
    order = [int(np.argmin(((truth.centres - c) ** 2).sum(1))) for c in fitted.centres]
    assert sorted(order) == list(range(8))  # each fitted cluster is one true cluster
    np.testing.assert_allclose(fitted.spreads, truth.spreads[order], rtol=0.05)
    np.testing.assert_allclose(fitted.weights, truth.weights[order], atol=0.01)
    fitted.save(tmp_path / "m.npz")
    again = Mixture.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.centres, fitted.centres)
    drawn = mixture_keys(5_000, DIM, seed=3, mixture=again)
    assert drawn.shape == (5_000, DIM) and drawn.dtype == np.float16
    spread_drawn, spread_keys = float(np.std(drawn.astype(np.float32))), float(np.std(keys.astype(np.float32)))
    assert abs(spread_drawn - spread_keys) < 0.05 * spread_keys
