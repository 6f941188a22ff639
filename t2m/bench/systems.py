"""The systems the bench decodes: the model alone, the model with kNN-MT (:class:`t2m.options.RetrievalOptions`),
text2mol without valid-SMILES reranking (read off the reranked decoding), and the no-model retrieval
baseline (:mod:`t2m.neighbours.baselines`). Each gives a :class:`SystemRun`: its outputs on the test rows, timed."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from t2m.bench.config import BenchConfig
from t2m.decoding.translator import Translation
from t2m.neighbours.database import NeighbourDatabase
from t2m.neighbours.ranker import NeighbourRanker
from t2m.neighbours.similarity import MoleculeSimilarity, TextSimilarity
from t2m.options import DecodingOptions, SmilesConstraints, default_batch_size
from t2m.process_memory import current_rss_mb, peak_rss_mb
from t2m.tasks import MOL2TEXT, TEXT2MOL


@dataclass
class SystemRun:
    """One system's outputs on the test rows and how long they took."""

    name: str
    settings: dict[str, Any]
    outputs: list[str]
    seconds: float
    output_tokens: int
    flags: dict[str, int] = field(default_factory=dict)
    neighbours: list[int] | None = None  # retrieval: the training row each output came from
    memory: dict[str, Any] = field(default_factory=dict)
    reused: bool = False
    first_beam: list[str] | None = None  # text2mol: the top beam of each row (the output without reranking)
    # model systems: each row's n-best, {"candidates": [...], "scores": [...]} (best first; scores may be None)
    nbest: list[dict[str, Any]] | None = None

    @property
    def speed(self) -> dict[str, Any]:
        n = len(self.outputs)
        return {"seconds": round(self.seconds, 3), "molecules_per_s": round(n / self.seconds, 3) if self.seconds > 0 else None,
                "tokens_per_s": round(self.output_tokens / self.seconds, 1) if self.seconds > 0 else None,
                "output_tokens": self.output_tokens, "rows": n, "reused_from_cache": self.reused}


def system_name(base: str, beam: int, headline_beam: int, rerank: bool = True, task: str = TEXT2MOL) -> str:
    """``model`` / ``model+knn`` at the headline beam, ``@greedy`` / ``@beam<N>`` otherwise, and
    ``/no-rerank`` for text2mol without valid-SMILES reranking."""
    name = base if beam == headline_beam else f"{base}@{'greedy' if beam == 1 else f'beam{beam}'}"
    return name if rerank or task != TEXT2MOL else f"{name}/no-rerank"



def count_output_tokens(tokenizer: Any, outputs: Sequence[str]) -> int:
    """Tokens of the chosen outputs under the model's tokenizer, each with its end-of-sequence token."""
    if not outputs:
        return 0
    ids = tokenizer(list(outputs), add_special_tokens=False)["input_ids"]
    return int(sum(len(x) + 1 for x in ids))


def effective_decoding_options(translator: Any, task: str, config: BenchConfig) -> dict[str, Any]:
    """The repetition options every decoding of ``task`` uses: the bench's, else the model's defaults."""
    return translator.decoding_options(task, repetition_penalty=config.repetition_penalty,
                                       no_repeat_ngram_size=config.no_repeat_ngram_size)


# rows per piece of a decoding (at most, with worker processes): each piece's results are kept (``kept``)
# as soon as it is done, so an interruption loses at most this many rows' work per process
KEEP_EVERY = 128


def decode_system(translator: Any, name: str, sources: Sequence[str], task: str, beam: int, rerank: bool,
                  knn: Any, config: BenchConfig, pool: Any = None, kept: Any = None) -> SystemRun:
    """Translate ``sources`` with ``translator`` -- or, given a :class:`t2m.decoding.pool.DecodePool`, in
    its workers at once -- and time it (wall clock). ``kept``: a :class:`t2m.translate_job.Partial` of this
    decoding: its rows are not decoded again, and every finished chunk is added to it, so that an
    interrupted bench resumes; the time is then the sum of the pieces' wall times."""
    from collections import Counter

    from tqdm.auto import tqdm

    decoding = DecodingOptions(num_beams=beam, batch_size=config.batch_size, max_new_tokens=config.max_new_tokens,
                               repetition_penalty=config.repetition_penalty,
                               no_repeat_ngram_size=config.no_repeat_ngram_size)
    constraints = SmilesConstraints(valid_smiles=rerank)
    rss_before = current_rss_mb()
    memory: dict[str, Any] = {}
    results: list = [None] * len(sources)
    earlier = kept_seconds(kept)
    for row, data in (kept.done.items() if kept is not None else ()):
        if 0 <= row < len(results):
            results[row] = Translation.from_dict(data)
    todo = [i for i, r in enumerate(results) if r is None]
    piece = f"{time.time():.6f}"
    started = time.perf_counter()

    def keep(rows: list[int], chunk: list) -> None:  # rows: positions in todo
        for r, result in zip(rows, chunk):
            results[todo[r]] = result
        if kept is not None:
            kept.add([todo[r] for r in rows], chunk, piece=piece, elapsed=round(time.perf_counter() - started, 3))

    if pool is not None and todo:  # the store goes by folder
        done = pool.translate([sources[i] for i in todo], task, decoding, constraints, knn, progress=config.progress,
                              chunk_size=KEEP_EVERY, on_chunk=keep)
        seconds = done.seconds
        memory = {"workers": pool.jobs, "threads_per_worker": pool.threads, "chunk_seconds": done.chunk_seconds,
                  "worker_peak_rss_mb": sorted(done.worker_peak_rss_mb.values())}
    else:
        if todo:  # warm-up (untimed): the first generate call of a configuration pays one-off costs
            translator.translate([sources[i] for i in todo[:2]], task, decoding, constraints, knn)
        started = time.perf_counter()
        with tqdm(total=len(todo), desc=f"{task} {name}", disable=not config.progress or not todo,
                  dynamic_ncols=True) as bar:
            for first in range(0, len(todo), KEEP_EVERY):
                rows = list(range(first, min(first + KEEP_EVERY, len(todo))))
                keep(rows, translator.translate([sources[todo[r]] for r in rows], task, decoding, constraints, knn))
                bar.update(len(rows))
        seconds = time.perf_counter() - started
    if earlier:
        memory["pieces_seconds"] = [*earlier, round(seconds, 3)]
    seconds += sum(earlier)
    outputs = [r.output for r in results]
    flags = Counter(flag for r in results for flag in r.flags)
    settings = {"decoder": "model+knn" if knn is not None else "model", "num_beams": beam,
                "valid_smiles_rerank": bool(rerank and task == TEXT2MOL), "smiles_syntax": task == TEXT2MOL,
                "smiles_valence": task == TEXT2MOL,
                "max_new_tokens": config.max_new_tokens,
                "batch_size": config.batch_size or default_batch_size(beam),
                "repetition": effective_decoding_options(translator, task, config)}
    if knn is not None:
        settings["knn"] = {"k": knn.k, "lambda": knn.lambda_, "temperature": knn.temperature, "pairs": knn.pairs,
                           "store": str(knn.store.path), "entries": knn.store.count}
    first_beam = [r.candidates[0] if r.candidates else r.output for r in results] if task == TEXT2MOL else None
    nbest = [{"candidates": list(r.candidates), "scores": r.scores} for r in results]
    return SystemRun(name, settings, outputs, seconds, count_output_tokens(translator.tokenizer, outputs), dict(flags),
                     memory={"rss_before_mb": rss_before, "rss_after_mb": current_rss_mb(),
                             "peak_rss_so_far_mb": peak_rss_mb(), **memory}, first_beam=first_beam, nbest=nbest)


def kept_seconds(kept: Any) -> list[float]:
    """The wall seconds of each earlier piece of a decoding kept in ``kept`` (a Partial whose lines carry
    ``piece`` and ``elapsed``): each piece's last kept chunk. Work lost with an unfinished chunk is
    done again, so it does not count."""
    pieces: dict[str, float] = {}
    for extra in (kept.extra if kept is not None else ()):
        if "piece" in extra and isinstance(extra.get("elapsed"), (int, float)):
            pieces[extra["piece"]] = max(pieces.get(extra["piece"], 0.0), float(extra["elapsed"]))
    return [round(v, 3) for _, v in sorted(pieces.items())]


def without_rerank(run: SystemRun, name: str, tokenizer: Any) -> SystemRun:
    """The text2mol system without valid-SMILES reranking, read off a reranked run: beam search is the
    same, only the choice among its n-best differs (the top beam instead of the best valid one), so no
    second decoding is needed; the timing is the reranked run's."""
    if run.first_beam is None:
        raise ValueError(f"{run.name}: no top-beam outputs recorded; rerun with fresh=True")
    settings = {**run.settings, "valid_smiles_rerank": False, "derived_from": run.name}
    flags = {k: v for k, v in run.flags.items() if k != "no valid SMILES among the beams"}
    return SystemRun(name, settings, list(run.first_beam), run.seconds, count_output_tokens(tokenizer, run.first_beam),
                     flags, memory=run.memory, reused=run.reused)


def retrieval_system(task: str, train: Sequence[dict], sources: Sequence[str], progress: bool) -> SystemRun:
    """The no-model baseline over the training pairs (:mod:`t2m.neighbours.baselines`); the timing covers the
    queries, the database index is built before the clock starts (its time is in ``settings``)."""
    started = time.perf_counter()
    if task == MOL2TEXT:
        retriever = MoleculeSimilarity([r["smiles"] for r in train], [r["description"] for r in train])
        how = "caption of the most similar training molecule (Morgan r=2 2048-bit Tanimoto)"
    else:
        retriever = TextSimilarity([r["description"] for r in train], [r["smiles"] for r in train])
        how = "SMILES of the most similar training description (TF-IDF word 1-2-grams, cosine)"
    index_seconds = time.perf_counter() - started
    started = time.perf_counter()
    found = retriever.most_similar(list(sources), progress=progress)
    seconds = time.perf_counter() - started
    tokens = sum(len(o.split()) for o in found.outputs)
    return SystemRun("retrieval", {"decoder": "retrieval", "method": how, "database_rows": len(train),
                                   "database_index_seconds": round(index_seconds, 3), "fallbacks": found.n_fallback},
                     found.outputs, seconds, tokens, {"fallback": found.n_fallback} if found.n_fallback else {},
                     neighbours=list(found.neighbours),
                     memory={"peak_rss_so_far_mb": peak_rss_mb()})


def ranked_retrieval_system(task: str, train: Sequence[dict], sources: Sequence[str], ranker: Any) -> SystemRun:
    """The no-model baseline with a learned choice among the nearest pairs (:mod:`t2m.neighbours.ranker`):
    the target of the pair the ranker puts first among the ``ranker.pool`` nearest training pairs."""
    started = time.perf_counter()
    database = NeighbourDatabase.from_records(train, "train")
    database.use_rankers({task: NeighbourRanker.from_dict(ranker.to_dict())})
    database.prepare([task])
    index_seconds = time.perf_counter() - started
    started = time.perf_counter()
    found = database.search(list(sources), task, 1)
    seconds = time.perf_counter() - started
    outputs = [n[0].target for n in found]
    how = (f"target of the training pair a learned ranker puts first among the {ranker.pool} nearest "
           "(t2m.neighbours.ranker)")
    return SystemRun("retrieval+ranker", {"decoder": "retrieval", "method": how, "database_rows": len(train),
                                          "ranker": ranker.to_dict(), "database_index_seconds": round(index_seconds, 3)},
                     outputs, seconds, sum(len(o.split()) for o in outputs), {}, neighbours=[n[0].row for n in found],
                     memory={"peak_rss_so_far_mb": peak_rss_mb()})
