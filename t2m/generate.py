"""Batched translation with any T5 checkpoint t2m loads: ``Translator``.

Decoding is ``model.generate`` itself (greedy, beam search, sampling); retrieval augmentation plugs in
as a logits processor from ``datastore`` (the one place ``t2m`` imports it). For text2mol the n-best
list can be reranked to the best-scoring beam that RDKit parses.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from t2m.fast_decoding import generate_in_rounds
from t2m.mbr import OFF as MBR_OFF
from t2m.mbr import check_utility, mbr_index
from t2m.smiles_grammar import FLAG_BROKEN_SYNTAX, FLAG_UNFINISHED, syntax_flags  # noqa: F401 (re-exported beside the other FLAG_s)
from t2m.tasks import MOL2TEXT, TEXT2MOL, check_task, strip_prompt

log = logging.getLogger(__name__)

FLAG_EMPTY = "empty input"
FLAG_TRUNCATED = "input truncated"
FLAG_INVALID_INPUT = "input SMILES not parsed by RDKit"
FLAG_NO_VALID = "no valid SMILES among the beams"

# new tokens of the first decoding round (Translator.translate), by task and greedy (1) / beam search (>1):
# about the length most ChEBI-20 targets fit in (mean 63 tokens per SMILES, 87 per caption). Measured with
# the shipped model, one thread: beam 5, 64 test rows, 64 (text2mol) and 128 (mol2text) fastest of
# 32/64/128; greedy, 256 test rows, text2mol 6.2 inputs/s in rounds against 5.0 in one, mol2text 6.4
# against 7.0 -- so greedy captions decode in one round (0).
FIRST_ROUND_TOKENS = {(TEXT2MOL, 1): 64, (TEXT2MOL, 5): 64, (MOL2TEXT, 1): 0, (MOL2TEXT, 5): 128}


# inputs per batch, greedy (1) / beam search (>1): measured with the shipped model, one thread, 128 test rows at
# beam 5: batches of 64 took text2mol 50-53 s (32: 57 s, 128: 60 s) and mol2text 82 s (32: 93 s, 128: 112 s),
# same candidates; greedy, 192 rows: 32 faster than 64 (text2mol 37 against 41 s, mol2text 35 against 37 s)
BATCH_SIZE = {1: 32, 5: 64}


def default_batch_size(num_beams: int) -> int:
    """Inputs per ``generate`` batch by default at ``num_beams`` (see ``BATCH_SIZE``)."""
    return BATCH_SIZE[1 if num_beams <= 1 else 5]


def default_first_round(task: str, num_beams: int) -> int:
    """The default first decoding round for ``task`` at ``num_beams`` (see ``FIRST_ROUND_TOKENS``)."""
    return FIRST_ROUND_TOKENS[(task, 1 if num_beams <= 1 else 5)]


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

    def to_dict(self) -> dict[str, Any]:
        out = {"input": self.input, "output": self.output, "candidates": self.candidates,
               "scores": self.scores, "flags": self.flags}
        if self.neighbours:
            out["neighbours"] = [{"row": n.row, "similarity": n.similarity, "source": n.source, "target": n.target}
                                 for n in self.neighbours]
        return out


@dataclass
class KNNSettings:
    """Retrieval settings for one decoding call; ``None`` fields take the store's tuned defaults."""

    store: Any  # a datastore folder path or a loaded datastore
    k: int | None = None
    lambda_: float | None = None
    temperature: float | None = None
    exact: bool = False  # search the keys exactly instead of the store's (approximate) index
    pairs: int | None = None  # search only the entries of each input's N nearest training pairs (t2m.knn_pairs); 0: whole store
    trace: list | None = None  # receives a datastore.StepTrace per decoding step when a list


def knn_pairs(knn: KNNSettings | None, store: Any) -> int:
    """The number of nearest training pairs ``knn`` restricts retrieval to: ``knn.pairs`` when given, else
    the store's tuned default (``t2m tune --pairs``); 0 means the whole store."""
    return 0 if knn is None else store.knn_params.replace(pairs=knn.pairs).pairs or 0


def is_valid_smiles(smiles: str) -> bool:
    """True when RDKit parses ``smiles`` into a molecule with at least one atom."""
    from rdkit import Chem, rdBase

    if not smiles or not smiles.strip():
        return False
    with rdBase.BlockLogs():  # a failed parse is an answer here, not an error to print
        mol = Chem.MolFromSmiles(smiles)
    return mol is not None and mol.GetNumAtoms() > 0


def canonical_smiles(smiles: str) -> str | None:
    """RDKit canonical isomeric SMILES, or ``None`` when RDKit cannot parse it."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if smiles else None
    return Chem.MolToSmiles(mol) if mol is not None else None


class Translator:
    """Translate descriptions to SMILES (``text2mol``) or SMILES to descriptions (``mol2text``)."""

    def __init__(self, model, tokenizer, info=None, max_source_len: int = 512, database=None):
        """``database``: the neighbour database of a checkpoint trained with neighbours in its input (a
        :class:`t2m.neighbours.NeighbourDatabase` or a TSV of pairs); None reads the one the checkpoint's
        ``t2m.json`` names (the shipped model carries its own)."""
        from t2m.modeling import CheckpointInfo
        from t2m.neighbours import NeighbourFormat

        self.model = model.eval()
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
        from t2m.modeling import default_model_dir, load_model

        if path is None:
            path = default_model_dir()
            if not (Path(path) / "config.json").is_file():
                raise FileNotFoundError(f"{path}: the default model is not installed; pass a model directory (--model DIR)")
        model, tokenizer, info = load_model(path, allow_pickle=allow_pickle, device=device, prompt_style=prompt_style)
        return cls(model, tokenizer, info, database=database)

    @property
    def database(self):
        """The :class:`t2m.neighbours.NeighbourDatabase` this checkpoint's inputs are conditioned on (loaded on
        first use), or None for a checkpoint that reads no neighbours."""
        from t2m.neighbours import load_checkpoint_database

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
        from t2m.neighbours import model_inputs

        return model_inputs(texts, task, self.info.prompt_style, self.neighbour_format, self.database, neighbours)

    def decoding_defaults(self, task: str) -> dict[str, Any]:
        """The checkpoint's recommended ``generate`` options for ``task`` (``t2m.json`` "decoding"), e.g.
        ``{"no_repeat_ngram_size": 3}`` for captions; {} for checkpoints that recommend none."""
        return dict(self.info.decoding.get(task, {}))

    def decoding_options(self, task: str, **given: Any) -> dict[str, Any]:
        """:meth:`t2m.modeling.CheckpointInfo.decoding_options` of this checkpoint."""
        return self.info.decoding_options(task, **given)

    # --------------------------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str], task: str, flags: list[list[str]], rows: Sequence[int],
                neighbours: Sequence[Sequence[Any]] | None = None):
        prompted = self.model_inputs(texts, task, neighbours)
        ids = self.tokenizer(prompted, add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        out = []
        for row, seq, f in zip(rows, ids, flags):
            if len(seq) + 1 > self.max_source_len:
                log.warning("row %d: input of %d tokens truncated to %d", row + 1, len(seq) + 1, self.max_source_len)
                f.append(FLAG_TRUNCATED)
                seq = seq[: self.max_source_len - 1]
            out.append(seq + [eos])
        return out

    def translate(
        self,
        inputs: Sequence[str] | str,
        task: str,
        num_beams: int = 1,
        num_return_sequences: int | None = None,
        batch_size: int | None = None,
        max_new_tokens: int = 256,
        valid_smiles: bool = True,
        smiles_syntax: bool = True,
        smiles_valence: bool = True,
        canonicalize: bool = False,
        do_sample: bool = False,
        sampling_temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
        no_repeat_ngram_size: int | None = None,
        length_penalty: float | None = None,
        knn: KNNSettings | None = None,
        mbr: str = "none",
        progress: bool = False,
        first_round_tokens: int | None = None,
    ) -> list[Translation]:
        """Translate every input; bad inputs are flagged by row and the rest translated.

        ``batch_size`` inputs go through ``generate`` at once (None: :func:`default_batch_size`, 32 for
        greedy and 64 for beam search).

        text2mol with ``valid_smiles`` returns the best-scoring candidate RDKit parses (all beams are
        considered) and flags rows where none parses; with ``smiles_syntax`` every hypothesis is kept a
        syntactically possible SMILES while it is decoded (:mod:`t2m.smiles_grammar`: branches, ring bonds
        and bracket atoms closed, nothing after a bond symbol ends, and all of it by ``max_new_tokens``) and,
        with ``smiles_valence`` as well, keeps every atom's valence and every ring bond legal
        (:mod:`t2m.smiles_valence`); ``canonicalize`` rewrites outputs as RDKit
        canonical SMILES. ``knn`` augments decoding with a kNN-MT datastore (with ``knn.pairs``, each input
        retrieves only among the tokens of its ``pairs`` nearest training pairs: :mod:`t2m.knn_pairs`).
        ``repetition_penalty``, ``no_repeat_ngram_size`` and ``length_penalty`` left ``None`` take the checkpoint's recommended
        values for ``task`` (:meth:`decoding_defaults`); pass 1.0 / 0 / 1.0 to switch them off.

        mol2text with ``mbr`` (``"chrf"`` or ``"bleu"``, :mod:`t2m.mbr`) returns, of all the beams (or of
        the ``num_return_sequences`` samples), the caption that agrees most with the others instead of the
        most probable one.

        Decoding runs in length rounds (:func:`t2m.fast_decoding.length_rounds`): every input is first
        decoded with at most ``first_round_tokens`` new tokens (None: the default for the task and
        beam size, :func:`default_first_round`), and only the inputs not finished by then (a beam without an
        end-of-sequence token) are decoded again, with twice the limit, up to ``max_new_tokens``. A batch
        runs as long as its longest output, so one runaway output no longer keeps 31 finished inputs
        decoding to ``max_new_tokens``. Each input gets the result it gets in one round (0: one round).
        """
        import torch
        from tqdm.auto import tqdm
        from transformers import LogitsProcessorList

        from t2m.batching import collate

        check_task(task)
        if isinstance(inputs, str):
            inputs = [inputs]
        inputs = list(inputs)
        rerank = task == TEXT2MOL and valid_smiles
        check_utility(mbr)
        if mbr != MBR_OFF and task != MOL2TEXT:
            raise ValueError(f"mbr={mbr!r}: MBR selection is for captions (mol2text); for text2mol it lowered Morgan "
                             "FTS on the dev slice (see t2m.mbr)")
        choose_by_mbr = mbr != MBR_OFF and (num_beams > 1 or do_sample)
        n_return = num_return_sequences or (num_beams if rerank or choose_by_mbr else 1)
        if n_return > max(num_beams, 1) and not do_sample:
            raise ValueError(f"num_return_sequences={n_return} needs num_beams >= {n_return} (or sampling)")
        flags: list[list[str]] = [[] for _ in inputs]
        results: list[Translation | None] = [None] * len(inputs)
        todo = []
        for row, text in enumerate(inputs):
            if text is None or not str(text).strip():
                log.warning("row %d: empty input, nothing to translate", row + 1)
                flags[row].append(FLAG_EMPTY)
                results[row] = Translation(input=text or "", output="", candidates=[], flags=flags[row])
            else:
                if task == MOL2TEXT and not is_valid_smiles(text):
                    log.warning("row %d: input SMILES %r is not parsed by RDKit; captioned anyway", row + 1, text[:60])
                    flags[row].append(FLAG_INVALID_INPUT)
                todo.append(row)
        if not todo:  # every input empty (a DecodePool chunk can be)
            return results  # type: ignore[return-value]
        shown = dict(zip(todo, self.neighbours([inputs[r] for r in todo], task)))
        encoded = dict(zip(todo, self._encode([inputs[r] for r in todo], task, [flags[r] for r in todo], todo,
                                              [shown[r] for r in todo])))
        # longest first: similar lengths share a batch, and memory peaks early
        order = sorted(todo, key=lambda r: -len(encoded[r]))
        gen_kwargs: dict[str, Any] = dict(do_sample=do_sample, early_stopping=True if num_beams > 1 else None,
                                          output_scores=True)
        if do_sample:
            gen_kwargs.update(temperature=sampling_temperature, top_k=top_k, top_p=top_p)
        gen_kwargs.update(self.decoding_options(task, repetition_penalty=repetition_penalty,
                                                no_repeat_ngram_size=no_repeat_ngram_size,
                                                length_penalty=length_penalty))
        gen_kwargs = {k: v for k, v in gen_kwargs.items() if v is not None}

        n_generate = num_beams if num_beams > 1 and not do_sample else n_return  # all beams: to see which ended
        batch_size = batch_size or default_batch_size(num_beams)
        if first_round_tokens is None:
            first_round_tokens = default_first_round(task, num_beams)
        if knn is not None and knn.trace is not None:
            first_round_tokens = 0  # a trace follows one decoding of each input

        knn_store, restricted = self._knn_store(knn), None
        if knn_store is not None:  # every retrieval scope, the whole store too: a store of the other task is refused
            knn_store.check_matches(task=task)
        pairs = knn_pairs(knn, knn_store)
        if pairs:
            restricted, pair_rows = self._pair_restriction(knn_store, task, pairs, {r: inputs[r] for r in todo})

        def encode(rows: list[int]) -> dict:
            if restricted is not None:  # the batch about to be decoded: each input's nearest pairs
                restricted.restrict([pair_rows[r] for r in rows])
            return collate([encoded[r] for r in rows], None, self.tokenizer.pad_token_id, multiple=8,
                           max_source_len=self.max_source_len)

        knn_context = self._knn_context(knn, knn_store, restricted)
        bar = tqdm(total=len(order), desc=f"translate {task}", unit="mol" if task == MOL2TEXT else "text",
                   disable=not progress, dynamic_ncols=True)
        with knn_context as knn_processors, torch.inference_mode():
            processors = list(knn_processors or [])
            if task == TEXT2MOL and smiles_syntax:
                # last: masks whatever kNN mixed in; every hypothesis completes within max_new_tokens
                processors.append(self._smiles_syntax_processor().limited(max_new_tokens, num_beams, do_sample,
                                                                          valence=smiles_valence))
            if processors:
                gen_kwargs["logits_processor"] = LogitsProcessorList(processors)
            for row, sequences, seq_scores in generate_in_rounds(
                    self.model, encode, order, num_beams=num_beams, num_return_sequences=n_generate,
                    max_new_tokens=max_new_tokens, first_round_tokens=first_round_tokens, batch_size=batch_size,
                    eos_token_id=self.tokenizer.eos_token_id, **gen_kwargs):
                texts = self.tokenizer.batch_decode(sequences[:n_return], skip_special_tokens=True,
                                                    clean_up_tokenization_spaces=False)
                scores = seq_scores[:n_return].tolist() if seq_scores is not None else None
                results[row] = self._finish(inputs[row], [t.strip() for t in texts], scores, flags[row], task,
                                            rerank, canonicalize, mbr if choose_by_mbr else MBR_OFF)
                results[row].neighbours = shown[row]
                bar.update(1)
        bar.close()
        return results  # type: ignore[return-value]

    def _finish(self, text, cands, scores, row_flags, task, rerank, canonicalize, mbr=MBR_OFF) -> Translation:
        output = cands[mbr_index(cands, mbr)] if cands else ""
        if task == TEXT2MOL:
            if rerank:
                valid = [c for c in cands if is_valid_smiles(c)]
                if valid:
                    output = valid[0]
                else:
                    row_flags.append(FLAG_NO_VALID)
            if not is_valid_smiles(output):  # why, when its syntax says: e.g. cut short by max_new_tokens
                row_flags.extend(syntax_flags(output))
            if canonicalize:
                output = canonical_smiles(output) or output
                cands = [canonical_smiles(c) or c for c in cands]
        return Translation(input=text, output=output, candidates=cands, scores=scores, flags=row_flags)

    def _smiles_syntax_processor(self):
        """This translator's :class:`t2m.smiles_grammar.SmilesSyntaxProcessor` (tables built on first use)."""
        from t2m.smiles_grammar import SmilesSyntaxProcessor

        if self._syntax is None:
            self._syntax = SmilesSyntaxProcessor(self.tokenizer)
        return self._syntax

    def _knn_store(self, knn: KNNSettings | None):
        """The loaded datastore of ``knn`` (checked against this model and tokenizer), or None."""
        if knn is None:
            return None
        import datastore  # retrieval is datastore's: t2m imports it only in these _knn / _pair methods

        if isinstance(knn.store, (str, Path)):
            return datastore.Datastore.load(knn.store, model=self.model, tokenizer=self.tokenizer)
        knn.store.check_matches(model=self.model, tokenizer=self.tokenizer)
        return knn.store

    def pair_search(self, store):
        """(:class:`t2m.knn_pairs.PairFinder`, :class:`datastore.RowRestrictedRetriever`) of ``store``, built
        on first use and kept for the store's folder."""
        import datastore
        from t2m.knn_pairs import PairFinder

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

    def _pair_restriction(self, store, task: str, pairs: int, inputs: dict[int, str]):
        """A :class:`datastore.RowRestrictedRetriever` over ``store`` and, per input row, the store rows of
        its ``pairs`` nearest training pairs (:class:`t2m.knn_pairs.PairFinder`, built once per store)."""
        if store.task not in (None, task):
            raise ValueError(f"{store.path}: a {store.task} datastore cannot restrict a {task} translation")
        finder, retriever = self.pair_search(store)
        rows = list(inputs)
        return retriever, dict(zip(rows, finder.nearest([inputs[r] for r in rows], pairs)))

    def _knn_context(self, knn: KNNSettings | None, store, retriever=None):
        if knn is None:
            return contextlib.nullcontext(None)
        import datastore

        return datastore.knn_generation(self.model, store, k=knn.k, lambda_=knn.lambda_, temperature=knn.temperature,
                                        exact=knn.exact, trace=knn.trace, retriever=retriever,
                                        check=False)  # _knn_store checked it
