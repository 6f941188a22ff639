"""The settings of one ``t2m bench`` run (:class:`BenchConfig`) and what the bench measures per task.

Apart from the rest of the bench (no torch): :func:`command_line` names a run's command from its settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from t2m.errors import OptionError, check_each, check_range
from t2m.tasks import MOL2TEXT, TASKS, TEXT2MOL

SWEEP_LAMBDAS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)

# headline metrics per task: the first is the one the verdict reads first (and examples rank by)
HEADLINE_METRICS = {MOL2TEXT: ("bleu4", "meteor"), TEXT2MOL: ("exact_match", "morgan_fts", "validity")}
PRIMARY_METRIC = {MOL2TEXT: "bleu4", TEXT2MOL: "exact_match"}
# metrics the model (with or without kNN) is compared with the retrieval baseline on
VERSUS_RETRIEVAL = {MOL2TEXT: ("bleu4", "meteor"), TEXT2MOL: ("exact_match", "morgan_fts", "maccs_fts")}
# metrics every paired bootstrap among the bench's own systems reports: the headline ones, then the rest of VERSUS_RETRIEVAL
COMPARED_METRICS = {task: tuple(dict.fromkeys((*HEADLINE_METRICS[task], *VERSUS_RETRIEVAL[task])))
                    for task in HEADLINE_METRICS}
# metrics the default system is compared with published predictions on (t2m.bench.published)
VERSUS_PUBLISHED = {MOL2TEXT: ("bleu4", "meteor"), TEXT2MOL: ("morgan_fts", "maccs_fts", "exact_match", "validity")}
LOWER_IS_BETTER = {"levenshtein", "fcd"}
# the metrics (mean) by which the bench names the best system t2m translate can run by default
DEFAULT_CHOICE_METRICS = {MOL2TEXT: ("bleu4", "meteor"), TEXT2MOL: ("morgan_fts", "maccs_fts")}
EXAMPLE_SYSTEMS = ("model", "model+knn", "retrieval")


@dataclass
class BenchConfig:
    """Everything that decides the numbers of one bench run (saved verbatim in ``bench.json``). A value
    out of its range is an :class:`t2m.errors.OptionError` naming the field."""

    out: Path
    model: Path | None = None  # None: the model that ships with t2m
    data: Path | None = None  # ChEBI-20 folder (or one holding chebi20/); None: where t2m finds it
    setting: str = "auto"
    dev_size: int | None = None  # None: t2m.data.DEV_SIZE
    tasks: tuple[str, ...] = TASKS
    beams: tuple[int, ...] = (1, 5)
    limit: int | None = None  # test rows (first N)
    dev_limit: int | None = None  # dev rows for tuning and the λ sweep (first N)
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    scaling_beam: int | None = None  # beam for the datastore-size runs; None: the smallest of ``beams``
    scaling_limit: int | None = 1000  # test rows (first N) of the datastore-size runs; None: all
    store_dir: Path | None = None  # None: <out>/stores
    index: str | None = None  # faiss factory for stores built here; None: the datastore default
    pairs: tuple[int, ...] = (0,)  # retrieval scopes t2m tune tries: 0 the whole store, N each input's N nearest pairs
    fcd: bool = True
    bootstrap: int = 1000
    knn_lambdas: tuple[float, ...] = SWEEP_LAMBDAS  # λ of the dev sweep (plot and table)
    sweep_rows: int | None = 60  # dev rows decoded per λ of the sweep (0: likelihood only)
    batch_size: int | None = None  # None: decoding the translator's default (32 greedy, 64 beam), else 32
    max_new_tokens: int = 256
    repetition_penalty: float | None = None  # passed to every model decoding, with and without kNN
    no_repeat_ngram_size: int | None = None
    examples: int = 3  # best / worst / changed-by-retrieval rows per task in the report
    seed: int = 0
    fresh: bool = False
    isolate_builds: bool = True  # build and tune datastores in a child process (memory measured apart)
    allow_pickle: bool = False
    progress: bool = True
    jobs: int = 1  # worker processes: stores of the tasks prepared at once, each decoding split over them
    knn: bool = True  # False: the model and the retrieval baseline only (no datastores, sweep or scaling runs)
    published: Path | None = None  # MolT5's predictions folder; None: molt5_predictions/ beside the data, if there
    compare_published: bool = True  # False: no published predictions scored (t2m.bench.published)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        unknown = [task for task in self.tasks if task not in TASKS]
        if not self.tasks or unknown:
            raise OptionError(f"tasks={','.join(self.tasks)}: "
                              f"{'no task' if not self.tasks else repr(unknown[0]) + ' is no task'}; "
                              f"give a comma list of {', '.join(TASKS)}")
        check_each("beams", self.beams, 1, rule="must be 1 or more (1: greedy search)")
        if self.scaling_beam is not None and self.scaling_beam not in self.beams:
            raise OptionError(f"scaling_beam={self.scaling_beam}: must be one of "
                              f"beams={','.join(map(str, self.beams))} (the 100% point of the datastore-size runs is the main model + kNN run at that beam)")
        check_each("fractions", self.fractions, 0, 1, low_open=True, rule="must be in (0, 1] (1: every training pair)",
                   empty=True)
        check_each("knn_lambdas", self.knn_lambdas, 0, 1, rule="must be in [0, 1]", empty=True)
        check_each("pairs", self.pairs, 0, rule="must be 0 or more (0: the whole store)")
        for name, low, rule in (
                ("limit", 1, "must be 1 or more (leave it out for every test row)"),
                ("dev_limit", 1, "must be 1 or more (leave it out for every dev row)"),
                ("dev_size", 1, "must be 1 or more"),
                ("scaling_limit", 1, "must be 1 or more (None: every test row)"),
                ("bootstrap", 1, "must be 1 or more"),
                ("sweep_rows", 0, "must be 0 or more (0: likelihood only)"),
                ("batch_size", 1, "must be 1 or more"),
                ("max_new_tokens", 1, "must be 1 or more"),
                ("no_repeat_ngram_size", 0, "must be 0 or more (0: off)"),
                ("examples", 0, "must be 0 or more"),
                ("jobs", 1, "must be 1 or more (1: this process)")):
            check_range(name, getattr(self, name), low, rule=rule)
        check_range("repetition_penalty", self.repetition_penalty, 0, low_open=True, rule="must be > 0 (1: off)")

    @property
    def headline_beam(self) -> int:
        return max(self.beams)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in data.items()}


def command_line(bench: dict[str, Any]) -> str:
    """The ``t2m bench`` command that reproduces the run of ``bench`` (a bench.json): every setting that
    differs from the default. The report prints it (:mod:`t2m.report` takes it as text: the report does not
    import the bench)."""
    settings = bench["settings"]
    defaults = BenchConfig(out=settings["out"]).to_json()
    flags = {"fcd": "--no-fcd", "isolate_builds": "--in-process", "fresh": "--fresh", "allow_pickle": "--allow-pickle",
             "knn": "--no-knn", "compare_published": "--no-published"}
    parts = ["t2m bench"]
    for key, value in settings.items():
        if key == "progress" or (value == defaults.get(key) and key not in ("out", "data")) or value is None:
            continue
        if key in flags:
            parts.append(flags[key])
        elif isinstance(value, list):
            parts.append(f"--{key.replace('_', '-')} {','.join(f'{v:g}' if isinstance(v, float) else str(v) for v in value)}")
        else:
            parts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(parts)
