"""Batched translation with any T5 checkpoint t2m loads: ``Translator``.

Decoding is ``model.generate`` itself (greedy, beam search, sampling), asked for by three option objects
(:mod:`t2m.options`: :class:`DecodingOptions`, :class:`SmilesConstraints`, :class:`RetrievalOptions`).
Retrieval augmentation plugs in as a logits processor from ``datastore``; for text2mol the n-best list
can be reranked to the best-scoring beam that RDKit parses. :meth:`Translator.translate` takes texts;
:meth:`Translator.decode`, under it, takes token ids and extra logits processors (``t2m tune`` decodes
through it, so that λ is chosen under the decoding it is used with).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import datastore
from t2m.chem import canonical_smiles, is_valid_smiles
from t2m.decoding.batching import collate
from t2m.decoding.fast import generate_in_rounds
from t2m.decoding.mbr import mbr_index
from t2m.decoding.smiles_grammar import SmilesSyntaxProcessor, syntax_flags
from t2m.model.checkpoint import CheckpointInfo, default_model_dir, load_model, read_checkpoint_info
from t2m.neighbours.database import Neighbour, NeighbourFormat, load_checkpoint_database, model_inputs
from t2m.neighbours.pairs import PairFinder
from t2m.options import DecodingOptions, MBR_OFF, RetrievalOptions, SmilesConstraints, with_checkpoint_defaults
from t2m.tasks import MOL2TEXT, TEXT2MOL, check_task, strip_prompt

log = logging.getLogger(__name__)

FLAG_EMPTY = "empty input"
FLAG_TRUNCATED = "input truncated"
FLAG_INVALID_INPUT = "input SMILES not parsed by RDKit"
FLAG_NO_VALID = "no valid SMILES among the beams"


@dataclass
class Translation:
    """One input's result: ``output`` is the chosen candidate; ``candidates`` the n-best, best first."""

    input: str
    output: str
    candidates: list[str] = field(default_factory=list)
    scores: list[float] | None = None
    flags: list[str] = field(default_factory=list)
    # the database pairs written into the model's input (checkpoints trained with neighbours), best first
    neighbours: list[Any] = field(default_factory=list)
    # per candidate, the token ids the model generated, through </s> (before any canonicalisation); set by decode
    token_ids: list[list[int]] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out = {"input": self.input, "output": self.output, "candidates": self.candidates,
               "scores": self.scores, "flags": self.flags}
        if self.neighbours:
            out["neighbours"] = [{"row": n.row, "similarity": n.similarity, "source": n.source, "target": n.target}
                                 for n in self.neighbours]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Translation":
        """The translation :meth:`to_dict` wrote (a kept row of an interrupted run)."""
        return cls(input=data.get("input", ""), output=data.get("output", ""),
                   candidates=list(data.get("candidates") or []), scores=data.get("scores"),
                   flags=list(data.get("flags") or []), neighbours=[Neighbour(**n) for n in data.get("neighbours") or []])


def _generated_ids(sequence: list[int], eos: int | None) -> list[int]:
    """The generated part of one of ``generate``'s sequences: after the decoder start, through the first ``eos``."""
    generated = sequence[1:]
    return generated[: generated.index(eos) + 1] if eos in generated else generated


class Translator:
    """Translate descriptions to SMILES (``text2mol``) or SMILES to descriptions (``mol2text``)."""

    def __init__(self, model, tokenizer, info=None, max_source_len: int = 512, database=None):
        """``database``: the neighbour database of a checkpoint trained with neighbours in its input (a
        :class:`t2m.neighbours.database.NeighbourDatabase` or a TSV of pairs); None reads the one the checkpoint's
        ``t2m.json`` names (the shipped model carries its own)."""
        self.model = model.eval() if model is not None else None  # None: retrieval only (for_retrieval)
        self.tokenizer = tokenizer
        self.info = info or CheckpointInfo(path="")
        self.neighbour_format = NeighbourFormat.from_meta(self.info.extra)
        self._database = database
        self._syntax = None  # SmilesSyntaxProcessor, built on the first text2mol translation
        self._pair_finders: dict[str, tuple] = {}  # store path -> (PairFinder, RowRestrictedRetriever)
        self.max_source_len = min(max_source_len, getattr(tokenizer, "model_max_length", max_source_len) or max_source_len)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, allow_pickle: bool = False,
                        prompt_style: str | None = None, device: str | None = None, database=None) -> "Translator":
        """Load a checkpoint directory; ``None`` loads the default model that ships with t2m. ``database``
        replaces the neighbour database of a checkpoint that reads neighbours (see ``__init__``)."""
        if path is None:
            path = default_model_dir()
            if not (Path(path) / "config.json").is_file():
                raise FileNotFoundError(f"{path}: the default model is not installed; pass the path of a checkpoint "
                                        "folder")
        model, tokenizer, info = load_model(path, allow_pickle=allow_pickle, device=device, prompt_style=prompt_style)
        return cls(model, tokenizer, info, database=database)

    @classmethod
    def for_retrieval(cls, path: str | Path | None = None, database=None) -> "Translator":
        """A translator of the checkpoint at ``path`` (None: the shipped one) that only retrieves
        (:meth:`retrieve`): its neighbour database and rankers, without loading the model's weights or
        tokenizer (``t2m translate --system retrieval`` starts in half the time)."""
        path = Path(path) if path is not None else default_model_dir()
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: not a checkpoint directory; pass a directory saved by `t2m train`")
        return cls(None, None, read_checkpoint_info(path), database=database)

    def _need_model(self) -> None:
        if self.model is None:
            raise ValueError(f"{self.info.path}: this Translator was loaded for retrieval only "
                             "(Translator.for_retrieval); load it with Translator.from_pretrained to decode with the model")

    @property
    def database(self):
        """The :class:`t2m.neighbours.database.NeighbourDatabase` this checkpoint's inputs are conditioned on (loaded on
        first use), or None for a checkpoint that reads no neighbours."""
        self._database = load_checkpoint_database(self.info.path, self.neighbour_format, self._database)
        return self._database

    def neighbours(self, texts: Sequence[str], task: str) -> list[list[Any]]:
        """The neighbours each input is shown with (empty lists for a checkpoint that reads none)."""
        if self.neighbour_format is None:
            return [[] for _ in texts]
        return self.database.search([strip_prompt(t, task) for t in texts], task, self.neighbour_format.k)

    def model_inputs(self, texts: Sequence[str], task: str, neighbours: Sequence[Sequence[Any]] | None = None) -> list[str]:
        """The text the model reads for each input: the task prompt, the input and, for a checkpoint trained
        with neighbours, its neighbours (found here unless given) in the checkpoint's layout."""
        return model_inputs(texts, task, self.info.prompt_style, self.neighbour_format, self.database, neighbours)

    def decoding_defaults(self, task: str) -> dict[str, Any]:
        """The checkpoint's recommended options for ``task`` (``t2m.json`` "decoding"), e.g.
        ``{"no_repeat_ngram_size": 3}`` for captions; {} for checkpoints that recommend none."""
        return dict(self.info.decoding.get(task, {}))

    def decoding_options(self, task: str, **given: Any) -> dict[str, Any]:
        """:meth:`t2m.model.checkpoint.CheckpointInfo.decoding_options` of this checkpoint."""
        return self.info.decoding_options(task, **given)

    def options(self, task: str, decoding: DecodingOptions | None = None, constraints: SmilesConstraints | None = None
                ) -> tuple[DecodingOptions, SmilesConstraints]:
        """The :class:`DecodingOptions` and :class:`SmilesConstraints` a translation of ``task`` uses:
        ``decoding`` / ``constraints`` (None: the defaults) with the checkpoint's recommendations for
        ``task`` (``t2m.json`` "decoding") in every field still at its default."""
        section = self.info.decoding.get(task, {})
        return (with_checkpoint_defaults(decoding or DecodingOptions(), section),
                with_checkpoint_defaults(constraints or SmilesConstraints(), section))

    # --------------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], task: str, neighbours: Sequence[Sequence[Any]] | None = None,
               flags: Sequence[list[str]] | None = None, rows: Sequence[int] | None = None) -> list[list[int]]:
        """Token ids of what the model reads for each text (:meth:`model_inputs`), ending in ``</s>``;
        an input over ``max_source_len`` tokens is cut, logged by its ``rows`` number and flagged in
        ``flags``."""
        self._need_model()
        prompted = self.model_inputs(texts, task, neighbours)
        ids = self.tokenizer(prompted, add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        flags = flags if flags is not None else [[] for _ in ids]
        out = []
        for row, seq, f in zip(rows if rows is not None else range(len(ids)), ids, flags):
            if len(seq) + 1 > self.max_source_len:
                log.warning("row %d: input of %d tokens truncated to %d", row + 1, len(seq) + 1, self.max_source_len)
                f.append(FLAG_TRUNCATED)
                seq = seq[: self.max_source_len - 1]
            out.append(seq + [eos])
        return out

    def translate(self, inputs: Sequence[str] | str, task: str, decoding: DecodingOptions | None = None,
                  constraints: SmilesConstraints | None = None, retrieval: RetrievalOptions | None = None, *,
                  progress: bool = False) -> list[Translation]:
        """Translate every input; bad inputs are flagged by row and the rest translated.

        ``decoding`` (:class:`DecodingOptions`): beams, sampling, lengths, repetition settings, batches,
        MBR; ``constraints`` (:class:`SmilesConstraints`, text2mol): valid-SMILES reranking, the SMILES
        syntax and valence constraints, canonical output; ``retrieval`` (:class:`RetrievalOptions`): a
        kNN-MT datastore to decode with (with ``params.pairs``, each input retrieves only among the tokens
        of its nearest training pairs: :mod:`t2m.neighbours.pairs`). Fields left at their defaults take the
        checkpoint's recommendations for ``task`` (:meth:`options`).

        Decoding runs in length rounds (:func:`t2m.decoding.fast.length_rounds`): every input is first
        decoded with at most ``first_round_tokens`` new tokens, and only the inputs not finished by then
        are decoded again, with twice the limit, up to ``max_new_tokens``; each input gets the result it
        gets in one round.
        """
        check_task(task)
        self._need_model()
        retrieval = self._resolve_retrieval(retrieval, task)
        decoding, constraints = self.options(task, decoding, constraints)
        decoding.check_task(task)
        decoding.returned(task == TEXT2MOL and constraints.valid_smiles)  # refuse before any work
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        flags: list[list[str]] = [[] for _ in inputs]
        results: list[Translation | None] = [None] * len(inputs)
        todo = self._screen(inputs, task, flags, results)
        if not todo:  # every input empty (a DecodePool chunk can be)
            return results  # type: ignore[return-value]
        texts = [inputs[r] for r in todo]
        shown = self.neighbours(texts, task)
        encoded = self.encode(texts, task, shown, [flags[r] for r in todo], todo)
        retriever = pair_rows = None
        if retrieval is not None and retrieval.params.pairs:
            retriever, pair_rows = self._pair_restriction(retrieval.store, task, retrieval.params.pairs, texts)
        decoded = self.decode(encoded, task, decoding, constraints, retrieval, retriever=retriever,
                              pair_rows=pair_rows, progress=progress)
        for row, result, neighbours in zip(todo, decoded, shown):
            result.input, result.flags, result.neighbours = inputs[row], flags[row] + result.flags, neighbours
            results[row] = result
        return results  # type: ignore[return-value]

    def decode(self, encoded: Sequence[Sequence[int]], task: str, decoding: DecodingOptions,
               constraints: SmilesConstraints | None = None, retrieval: RetrievalOptions | None = None, *,
               retriever: Any = None, pair_rows: Sequence[Any] | None = None, logits_processors: Sequence[Any] = (),
               progress: bool = False) -> list[Translation]:
        """Decode inputs already encoded (token ids ending in ``</s>``, e.g. by :meth:`encode`): one
        :class:`Translation` per input, in order, its ``input`` left empty. The options are used as given
        (:meth:`options` adds the checkpoint's defaults). ``retrieval``: its store loaded and its params
        set (as :meth:`translate` resolves them); ``retriever``: the one to search (default: the store's),
        with ``pair_rows`` -- per input, the store rows a :class:`datastore.RowRestrictedRetriever` may
        search -- given to its searches batch by batch. ``logits_processors`` run after kNN and before
        the SMILES constraint (which has the last word)."""
        import torch
        from tqdm.auto import tqdm

        self._need_model()
        constraints = constraints or SmilesConstraints()
        decoding.check_task(task)
        rerank = task == TEXT2MOL and constraints.valid_smiles
        n_return = decoding.returned(rerank)
        mbr = decoding.mbr if decoding.choose_by_mbr else MBR_OFF
        traced = retrieval is not None and retrieval.trace is not None
        first_round = 0 if traced else decoding.first_round_or_default(task)  # a trace follows one decoding
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))  # longest first: memory peaks early
        device = next(self.model.parameters()).device

        def batch(rows: list[int]) -> dict:
            """``generate``'s keywords for the batch of ``rows``: its inputs and its logits processors."""
            padded = collate([encoded[i] for i in rows], None, self.tokenizer.pad_token_id, multiple=8,
                             max_source_len=self.max_source_len)
            return {**{name: tensor.to(device) for name, tensor in padded.items()}, **processors_for(rows)}

        results: list[Translation | None] = [None] * len(encoded)
        bar = tqdm(total=len(order), desc=f"translate {task}", unit="mol" if task == MOL2TEXT else "text",
                   disable=not progress, dynamic_ncols=True)
        with self._logits_processors(task, decoding, constraints, retrieval, retriever, pair_rows, logits_processors) \
                as processors_for, torch.inference_mode():
            for i, sequences, seq_scores in generate_in_rounds(
                    self.model, batch, order, num_beams=decoding.num_beams,
                    num_return_sequences=decoding.generated(rerank), max_new_tokens=decoding.max_new_tokens,
                    first_round_tokens=first_round, batch_size=decoding.batch_size_or_default(),
                    eos_token_id=self.tokenizer.eos_token_id, **decoding.generate_kwargs()):
                texts = self.tokenizer.batch_decode(sequences[:n_return], skip_special_tokens=True,
                                                    clean_up_tokenization_spaces=False)
                scores = seq_scores[:n_return].tolist() if seq_scores is not None else None
                results[i] = self._finish([t.strip() for t in texts], scores, task, rerank, constraints.canonicalize,
                                          mbr)
                results[i].token_ids = [_generated_ids(s, self.tokenizer.eos_token_id)
                                        for s in sequences[:n_return].tolist()]
                bar.update(1)
        bar.close()
        return results  # type: ignore[return-value]

    def retrieve(self, inputs: Sequence[str] | str, task: str, n_best: int = 1) -> list[Translation]:
        """No model: each input's answer is the target of the database pair the checkpoint's neighbour ranker
        puts first among the nearest (:mod:`t2m.neighbours.ranker`; the nearest pair where it has no
        ranker); ``candidates`` are the first ``n_best`` targets, ``neighbours`` their pairs. Bad inputs are
        flagged by row as in :meth:`translate`. Needs a checkpoint that reads a database (or ``database=``)."""
        check_task(task)
        if self.database is None:
            raise ValueError(f"{self.info.path}: this checkpoint reads no neighbour database, so there is nothing to "
                             "retrieve from; use a checkpoint trained with neighbours (the shipped one is)")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        flags: list[list[str]] = [[] for _ in inputs]
        results: list[Translation | None] = [None] * len(inputs)
        todo = self._screen(inputs, task, flags, results)
        found = self.database.search([strip_prompt(inputs[r], task) for r in todo], task, max(n_best, 1))
        for row, neighbours in zip(todo, found):
            targets = [n.target for n in neighbours]
            results[row] = Translation(input=inputs[row], output=targets[0] if targets else "", candidates=targets,
                                       flags=flags[row], neighbours=neighbours)
        return results  # type: ignore[return-value]

    def _screen(self, inputs: list[str], task: str, flags: list[list[str]], results: list) -> list[int]:
        """The rows to translate; an empty input gets its (empty) result and flag here, a mol2text input RDKit
        does not parse a flag (it is captioned anyway)."""
        todo = []
        for row, text in enumerate(inputs):
            if text is None or not str(text).strip():
                log.warning("row %d: empty input, nothing to translate", row + 1)
                flags[row].append(FLAG_EMPTY)
                results[row] = Translation(input=text or "", output="", candidates=[], flags=flags[row])
                continue
            if task == MOL2TEXT and not is_valid_smiles(text):
                log.warning("row %d: input SMILES %r is not parsed by RDKit; captioned anyway", row + 1, text[:60])
                flags[row].append(FLAG_INVALID_INPUT)
            todo.append(row)
        return todo

    def _finish(self, cands, scores, task, rerank, canonicalize, mbr=MBR_OFF) -> Translation:
        output, flags = cands[mbr_index(cands, mbr)] if cands else "", []
        if task == TEXT2MOL:
            if rerank:
                valid = [c for c in cands if is_valid_smiles(c)]
                if valid:
                    output = valid[0]
                else:
                    flags.append(FLAG_NO_VALID)
            if not is_valid_smiles(output):  # why, when its syntax says: e.g. cut short by max_new_tokens
                flags.extend(syntax_flags(output))
            if canonicalize:
                output = canonical_smiles(output) or output
                cands = [canonical_smiles(c) or c for c in cands]
        return Translation(input="", output=output, candidates=cands, scores=scores, flags=flags)

    @contextlib.contextmanager
    def _logits_processors(self, task: str, decoding: DecodingOptions, constraints: SmilesConstraints,
                           retrieval: RetrievalOptions | None, retriever: Any, pair_rows: Sequence[Any] | None,
                           extra: Sequence[Any]) -> Iterator[Callable[[list[int]], dict[str, Any]]]:
        """A function of a batch's rows giving ``generate``'s ``logits_processor`` keyword for that batch ({}
        when there is none): kNN (the model hooked while the context lasts; with ``pair_rows``, each input
        searching only its rows' entries: the batch's :class:`datastore.Restriction`), ``extra``, then the
        SMILES constraint, last, so that it masks whatever came before and every hypothesis completes
        within ``max_new_tokens``."""
        from transformers import LogitsProcessorList

        with contextlib.ExitStack() as stack:
            processors = []
            if retrieval is not None:
                processors += stack.enter_context(datastore.knn_generation(
                    self.model, retrieval.store, params=retrieval.params, exact=retrieval.exact, trace=retrieval.trace,
                    retriever=retriever, check=False))  # _resolve_retrieval checked it
            processors += list(extra)
            if task == TEXT2MOL and constraints.syntax:
                processors.append(self._smiles_syntax_processor().limited(
                    decoding.max_new_tokens, decoding.num_beams, decoding.do_sample, valence=constraints.valence))
            every_batch = {"logits_processor": LogitsProcessorList(processors)} if processors else {}
            if retrieval is None or pair_rows is None:
                yield lambda rows: every_batch
            else:  # processors[0] is kNN's: each batch's searches get that batch's inputs' rows
                knn, rest = processors[0], processors[1:]
                yield lambda rows: {"logits_processor": LogitsProcessorList(
                    [knn.restricted(retriever.restriction([pair_rows[i] for i in rows])), *rest])}

    def _smiles_syntax_processor(self):
        """This translator's :class:`t2m.decoding.smiles_grammar.SmilesSyntaxProcessor` (tables built on first use)."""
        if self._syntax is None:
            self._syntax = SmilesSyntaxProcessor(self.tokenizer)
        return self._syntax

    def _resolve_retrieval(self, retrieval: RetrievalOptions | None, task: str) -> RetrievalOptions | None:
        """``retrieval`` with its store loaded and checked against this model, tokenizer and ``task``, and
        the store's parameters where it chose none; None without retrieval."""
        if retrieval is None:
            return None

        store = retrieval.store
        if isinstance(store, (str, Path)):
            store = datastore.Datastore.load(store, model=self.model, tokenizer=self.tokenizer)
        else:
            store.check_matches(model=self.model, tokenizer=self.tokenizer)
        store.check_matches(task=task)  # every retrieval scope, the whole store too
        return retrieval.resolved(store)

    def pair_search(self, store):
        """(:class:`t2m.neighbours.pairs.PairFinder`, :class:`datastore.RowRestrictedRetriever`) of ``store``, built
        on first use and kept for the store's folder."""
        key = str(store.path)
        if key not in self._pair_finders:
            self._pair_finders[key] = (PairFinder.for_store(store), datastore.RowRestrictedRetriever(store))
        return self._pair_finders[key]

    def preload_retrieval(self, store, pairs: int | None) -> None:
        """Load what decoding with ``store`` will search: its index, or for ``pairs`` nearest pairs the pair
        finder only (the whole-store index would just take memory)."""
        if pairs:
            self.pair_search(store)
        else:
            store.retriever()

    def _pair_restriction(self, store, task: str, pairs: int, inputs: Sequence[str]) -> tuple[Any, list]:
        """A :class:`datastore.RowRestrictedRetriever` over ``store`` and, per input, the store rows of its
        ``pairs`` nearest training pairs (:class:`t2m.neighbours.pairs.PairFinder`, built once per store)."""
        if store.task not in (None, task):
            raise ValueError(f"{store.path}: a {store.task} datastore cannot restrict a {task} translation")
        finder, retriever = self.pair_search(store)
        return retriever, list(finder.nearest(list(inputs), pairs))
