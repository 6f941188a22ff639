"""What one translation call is asked to do, as three frozen option objects (in the way of transformers'
``GenerationConfig``):

- :class:`DecodingOptions`: how ``model.generate`` searches (beams, sampling, lengths, repetition
  settings, batches, MBR selection of a caption);
- :class:`SmilesConstraints`: what text2mol's outputs are held to (valid-SMILES reranking of the beams,
  the SMILES syntax and valence constraints while decoding, canonical output);
- :class:`RetrievalOptions`: kNN-MT retrieval: a datastore and the :class:`datastore.params.KNNParams`
  to search it with (None: the store's own, tuned by ``t2m tune``; a :class:`datastore.params.PartialKNNParams`:
  some of them, the rest the store's).

A value out of its range is an :class:`t2m.errors.OptionError` naming the field (``num_beams=0: must be
1 or more (1: greedy search)``).

Defaults come in three layers, as in transformers: each field's own default; the checkpoint's
``t2m.json`` ``"decoding"`` section, per task, which may set any field of the first two (e.g.
``{"mol2text": {"no_repeat_ngram_size": 3, "num_beams": 5}}``) and applies to every field a call leaves
at its default (:func:`with_checkpoint_defaults`); the call's own values. Retrieval's defaults are the
store's (``datastore.json`` ``"knn"``), since λ, k and T are tuned for a store, not for a model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

from datastore.params import PartialKNNParams
from datastore.store import Datastore, DatastoreError
from t2m.errors import OptionError, check_range
from t2m.tasks import MOL2TEXT, TASKS, TEXT2MOL, check_task

# MBR selection of a caption (t2m.decoding.mbr): its sentence utilities, and the value that switches it off
MBR_UTILITIES = ("chrf", "bleu")
MBR_OFF = "none"


def check_mbr_utility(name: str) -> str:
    """``name`` if it is a known MBR utility or ``"none"``; otherwise a ValueError listing them."""
    if name not in MBR_UTILITIES and name != MBR_OFF:
        raise ValueError(f"MBR utility {name!r}: choose one of {', '.join(MBR_UTILITIES)}, or {MBR_OFF!r} for none")
    return name


# inputs per batch, greedy (1) / beam search (>1): measured with the shipped model, one thread, 128 test rows at
# beam 5: batches of 64 took text2mol 50-53 s (32: 57 s, 128: 60 s) and mol2text 82 s (32: 93 s, 128: 112 s),
# same candidates; greedy, 192 rows: 32 faster than 64 (text2mol 37 against 41 s, mol2text 35 against 37 s)
BATCH_SIZE = {1: 32, 5: 64}

# new tokens of the first decoding round, by task and greedy (1) / beam search (>1): about the length most
# ChEBI-20 targets fit in (mean 63 tokens per SMILES, 87 per caption). Measured with the shipped model, one
# thread: beam 5, 64 test rows, 64 (text2mol) and 128 (mol2text) fastest of 32/64/128; greedy, 256 test rows,
# text2mol 6.2 inputs/s in rounds against 5.0 in one, mol2text 6.4 against 7.0 -- so greedy captions decode
# in one round (0).
FIRST_ROUND_TOKENS = {(TEXT2MOL, 1): 64, (TEXT2MOL, 5): 64, (MOL2TEXT, 1): 0, (MOL2TEXT, 5): 128}

# generate() options whose "off" value a checkpoint's recommendation can be switched off with
DECODING_OFF = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "length_penalty": 1.0}


def default_batch_size(num_beams: int) -> int:
    """Inputs per ``generate`` batch by default at ``num_beams`` (see ``BATCH_SIZE``)."""
    return BATCH_SIZE[1 if num_beams <= 1 else 5]


def default_first_round(task: str, num_beams: int) -> int:
    """The default first decoding round for ``task`` at ``num_beams`` (see ``FIRST_ROUND_TOKENS``)."""
    return FIRST_ROUND_TOKENS[(task, 1 if num_beams <= 1 else 5)]


@dataclass(frozen=True)
class DecodingOptions:
    """How ``model.generate`` searches, for one :meth:`t2m.decoding.translator.Translator.translate` call.

    ``num_return_sequences`` None: 1, or every beam when a choice among them follows (valid-SMILES
    reranking, MBR). ``batch_size`` None: :func:`default_batch_size`. ``repetition_penalty``,
    ``no_repeat_ngram_size``, ``length_penalty`` None: the checkpoint's recommendation, else off (pass
    1.0 / 0 / 1.0 to switch a recommendation off). ``mbr`` (``"chrf"``/``"bleu"``, mol2text): return the
    candidate that agrees most with the others (:mod:`t2m.decoding.mbr`). ``first_round_tokens``: new tokens of the
    first length round (:func:`t2m.decoding.fast.length_rounds`; None: :func:`default_first_round`, 0:
    one round)."""

    num_beams: int = 1
    num_return_sequences: int | None = None
    max_new_tokens: int = 256
    batch_size: int | None = None
    do_sample: bool = False
    sampling_temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    length_penalty: float | None = None
    mbr: str = MBR_OFF
    first_round_tokens: int | None = None

    def __post_init__(self) -> None:
        check_range("num_beams", self.num_beams, 1, rule="must be 1 or more (1: greedy search)")
        check_range("num_return_sequences", self.num_return_sequences, 1, rule="must be 1 or more")
        check_range("batch_size", self.batch_size, 1, rule="must be 1 or more")
        check_range("max_new_tokens", self.max_new_tokens, 1, rule="must be 1 or more")
        check_range("top_p", self.top_p, 0, 1, low_open=True, rule="must be in (0, 1]")
        check_range("top_k", self.top_k, 0, rule="must be 0 or more")
        check_range("repetition_penalty", self.repetition_penalty, 0, low_open=True, rule="must be > 0 (1: off)")
        check_range("no_repeat_ngram_size", self.no_repeat_ngram_size, 0, rule="must be 0 or more (0: off)")
        check_range("first_round_tokens", self.first_round_tokens, 0, rule="must be 0 or more (0: one round)")
        check_range("sampling_temperature", self.sampling_temperature, 0, low_open=True, rule="must be > 0")
        check_mbr_utility(self.mbr)

    def check_task(self, task: str) -> None:
        """Refuse what ``task`` cannot use (MBR selects among captions only)."""
        check_task(task)
        if self.mbr != MBR_OFF and task != MOL2TEXT:
            raise ValueError(f"mbr={self.mbr}: MBR selection is for captions (mol2text); for text2mol it lowered "
                             "Morgan FTS on the dev slice (see t2m.decoding.mbr)")

    @property
    def choose_by_mbr(self) -> bool:
        """Whether the output is chosen among several candidates by MBR."""
        return self.mbr != MBR_OFF and (self.num_beams > 1 or self.do_sample)

    def returned(self, rerank: bool) -> int:
        """Candidates returned per input: ``num_return_sequences``, else every beam when a choice follows
        (``rerank``, MBR), else 1."""
        n = self.num_return_sequences or (self.num_beams if rerank or self.choose_by_mbr else 1)
        if n > max(self.num_beams, 1) and not self.do_sample:
            raise OptionError(f"num_return_sequences={n} needs num_beams={n} or more (or do_sample=True)")
        return n

    def generated(self, rerank: bool) -> int:
        """Sequences ``generate`` returns per input: all beams with beam search (to see which ended)."""
        return self.num_beams if self.num_beams > 1 and not self.do_sample else self.returned(rerank)

    def repetition(self) -> dict[str, Any]:
        """The repetition / length ``generate`` options that are set and not off."""
        return {name: value for name in DECODING_OFF if (value := getattr(self, name)) is not None
                and value != DECODING_OFF[name]}

    def generate_kwargs(self) -> dict[str, Any]:
        """``model.generate`` keywords for these options (beams, lengths and processors aside)."""
        kwargs: dict[str, Any] = dict(do_sample=self.do_sample, early_stopping=True if self.num_beams > 1 else None,
                                      output_scores=True)
        if self.do_sample:
            kwargs.update(temperature=self.sampling_temperature, top_k=self.top_k, top_p=self.top_p)
        kwargs.update(self.repetition())
        return {k: v for k, v in kwargs.items() if v is not None}

    def batch_size_or_default(self) -> int:
        return self.batch_size or default_batch_size(self.num_beams)

    def first_round_or_default(self, task: str) -> int:
        return default_first_round(task, self.num_beams) if self.first_round_tokens is None else self.first_round_tokens


@dataclass(frozen=True)
class SmilesConstraints:
    """What text2mol's outputs are held to (mol2text ignores them).

    ``valid_smiles``: return the best-scoring candidate RDKit parses (all beams are considered) and flag
    rows where none does. ``syntax``: keep every hypothesis a syntactically possible SMILES while it is
    decoded (:mod:`t2m.decoding.smiles_grammar`: branches, ring bonds and bracket atoms closed by
    ``max_new_tokens``); ``valence``, with it: keep every atom's valence and ring bond legal
    (:mod:`t2m.decoding.smiles_valence`). ``canonicalize``: write outputs as RDKit canonical SMILES."""

    valid_smiles: bool = True
    syntax: bool = True
    valence: bool = True
    canonicalize: bool = False


@dataclass(frozen=True)
class RetrievalOptions:
    """kNN-MT retrieval for one call: the datastore (a folder or a loaded :class:`datastore.Datastore`) and
    the :class:`datastore.params.KNNParams` to search it with -- None: the store's own (tuned) parameters;
    a :class:`datastore.params.PartialKNNParams`: the ones it gives, the rest the store's. ``pairs`` N > 0
    searches only the entries of each input's N nearest training pairs (:mod:`t2m.neighbours.pairs`). ``exact``:
    search the keys exactly instead of the store's (approximate) index. ``trace``: a list that receives a
    ``datastore.StepTrace`` per decoding step (each input decoded in one round then)."""

    store: Any
    params: Any = None  # datastore.params.KNNParams | datastore.params.PartialKNNParams | None
    exact: bool = False
    trace: list | None = field(default=None, compare=False)

    def resolved(self, store: Any) -> "RetrievalOptions":
        """These options with the loaded ``store`` and the whole :class:`datastore.params.KNNParams` they
        search it with: the store's where none were chosen."""
        return dataclasses.replace(self, store=store, params=_complete(self.params, store.knn_params))

    def by_value(self) -> "RetrievalOptions":
        """These options with the store as its folder (for another process; the trace cannot go there)."""
        if self.trace is not None:
            raise ValueError("a kNN trace is collected in this process only")
        return dataclasses.replace(self, store=str(getattr(self.store, "path", self.store)))

    # the parameters by name (None: the store's, when not chosen and the store is not loaded)
    @property
    def k(self) -> int | None:
        return self._param("k")

    @property
    def lambda_(self) -> float | None:
        return self._param("lambda_")

    @property
    def temperature(self) -> float | None:
        return self._param("temperature")

    @property
    def pairs(self) -> int | None:
        return self._param("pairs")

    def _param(self, name: str) -> Any:
        params = _complete(self.params, getattr(self.store, "knn_params", None))
        # a partial choice and the store not loaded: the parameter when it was chosen
        return getattr(params if params is not None else self.params, name, None)


def open_store(path: Any, task: str | None = None, field: str = "store") -> Any:
    """The datastore in ``path`` (a :class:`datastore.Datastore`, arrays memory-mapped, not read), its files'
    sizes checked against ``datastore.json`` and, with ``task``, its task: before any model loads. What is
    wrong is an :class:`t2m.errors.OptionError` naming option ``field``."""
    from pathlib import Path

    if not Path(path).is_dir():
        what = "no such folder" if not Path(path).exists() else "a file, not a folder"
        raise OptionError(f"{field}={path}: {what}; give the folder `t2m datastore build --out` wrote")
    try:
        store = Datastore.load(path)
        if task is not None:
            store.check_matches(task=task)
    except DatastoreError as err:
        raise OptionError(f"{field}={err}") from None
    if store.task not in TASKS:
        raise OptionError(f"{field}={path}: {Path(path) / 'datastore.json'} names task {store.task!r}, not "
                          f"{' or '.join(TASKS)}; rebuild the store with `t2m datastore build --task TASK`")
    return store


def _complete(params: Any, store_params: Any) -> Any:
    """The whole parameters of a choice ``params`` (KNNParams, PartialKNNParams or None) over a store's
    ``store_params`` (None when the store is not loaded: then only a whole choice is known)."""
    if params is None or isinstance(params, PartialKNNParams):
        if store_params is None:
            return None
        return store_params if params is None else params.over(store_params)
    return params


# ------------------------------------------------------------------------------ checkpoint defaults


OPTION_TYPES = (DecodingOptions, SmilesConstraints)
# the fields a checkpoint's t2m.json "decoding" section may set, per task
CHECKPOINT_FIELDS = {f.name: cls for cls in OPTION_TYPES for f in dataclasses.fields(cls)}

Options = TypeVar("Options", DecodingOptions, SmilesConstraints)


def with_checkpoint_defaults(options: Options, section: Mapping[str, Any]) -> Options:
    """``options`` with the checkpoint's per-task ``section`` applied to every field ``options`` leaves at
    its default (as transformers merges a model's generation config into the one a call passes)."""
    defaults = {f.name: f.default for f in dataclasses.fields(options)}
    given = {k: v for k, v in section.items() if k in defaults and getattr(options, k) == defaults[k]}
    return dataclasses.replace(options, **given) if given else options


def check_checkpoint_section(section: Mapping[str, Any]) -> None:
    """Refuse a t2m.json ``"decoding"`` task section with an unknown name or a bad value (ValueError)."""
    unknown = sorted(set(section) - set(CHECKPOINT_FIELDS))
    if unknown:
        raise ValueError(f"unknown option {', '.join(unknown)}; options are {', '.join(CHECKPOINT_FIELDS)}")
    for cls in OPTION_TYPES:
        cls(**{k: v for k, v in section.items() if CHECKPOINT_FIELDS[k] is cls})
