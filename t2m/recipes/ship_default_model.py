"""Ship a trained checkpoint as t2m's default model, with a model card scored on the test split.

    t2m ship runs/default_model [--data DIR] [--jobs 2] [--rows N] [--beam-rows N]
    t2m ship OUT --card-only --from-bench BENCH_DIR [--history TEXT]
    t2m ship OUT --card-only --tasks text2mol   # measure one task again

(:func:`ship_default_model` in Python; the command line is :mod:`t2m.cli.ship`.)

1. copies ``RUN/model`` (weights, tokenizer, configs; no optimizer state) to ``t2m/default_model``;
2. translates ChEBI-20 ``test.txt`` in both directions, greedy and beam 5, with ``t2m translate --jobs``
   (each setting split over ``--jobs`` worker processes), and scores each with ``t2m eval --json``
   (outputs in ``RUN/eval/``);
3. writes ``t2m/default_model/README.md``: config, data, steps, wall time, training throughput and
   peak memory, and the scores as ``t2m eval`` prints them.

Everything it runs is a public ``t2m`` command, so each step can be rerun by hand. ``--card-only`` skips
step 1 and rewrites the card of the model already shipped (outputs of step 2 in ``OUT/eval/``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from t2m.bench.verdicts import best_default_system
from t2m.data import read_file_bytes, read_records, read_tsv_records, resolve_chebi20_dir
from t2m.decoding.pool import cpu_count
from t2m.download import git_blob_id
from t2m.io import atomic_write_text
from t2m.model.checkpoint import RECOMMENDED_DECODING, default_model_dir
from t2m.neighbours.database import NeighbourDatabase, NeighbourFormat, load_checkpoint_database
from t2m.neighbours.ranker import fit_rankers, fitted_for, load_rankers, save_rankers
from t2m.tokenizer import load_tokenizer

SHIPPED_FILES = ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json", "spiece.model", "t2m.json",
                 "training_config.json", "trainer_state.json", "memory.tsv", "memory.tsv.xz")
SETTINGS = [("text2mol", 1), ("text2mol", 5), ("mol2text", 1), ("mol2text", 5)]


MEMORY_FILE = "memory.tsv.xz"  # a shipped memory: the pairs file's own bytes, xz-compressed
OFFICIAL_TRAIN_BLOB = "c1b42b82fdc8fb5287614e159196e25370763aac"  # git blob of MolT5's ChEBI-20_data/train.txt


def replace_memory(model_dir: Path, pairs: Path, ranker: Path | None = None) -> dict[str, Any]:
    """Make ``pairs`` (ChEBI-20-format TSV, or JSONL; ``.gz``/``.xz``/``.bz2`` read as the file inside) the
    checkpoint's memory: its bytes xz-compressed into :data:`MEMORY_FILE` (so the file decompresses to
    ``pairs`` byte for byte), named in ``t2m.json`` "neighbours" with a record of where it came from (rows,
    sha256 and git blob id of the uncompressed file), and the rankers refit on it -- or taken from
    ``ranker``, a file ``t2m ranker`` fitted on the same pairs (checked by their count). Returns the record."""
    import lzma

    pairs = Path(pairs)
    raw = read_file_bytes(pairs)
    records = read_records(pairs)
    rows = len(records)
    meta_file = model_dir / "t2m.json"
    meta = json.loads(meta_file.read_text())
    if not meta.get("neighbours"):
        raise ValueError(f"{meta_file}: this checkpoint reads no neighbours (no \"neighbours\" entry), so it has no "
                         "memory to replace")
    tmp = model_dir / (MEMORY_FILE + ".tmp")
    tmp.write_bytes(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    tmp.replace(model_dir / MEMORY_FILE)
    old = meta["neighbours"].get("database")
    if old and old != MEMORY_FILE:
        (model_dir / old).unlink(missing_ok=True)
    record = {"source": pairs.name, "rows": rows, "sha256": hashlib.sha256(raw).hexdigest(),
              "git_blob": git_blob_id(raw)}
    meta["neighbours"].update(database=MEMORY_FILE, memory=record)
    meta["neighbours"].pop("ranker", None)
    atomic_write_text(meta_file, json.dumps(meta, indent=2) + "\n")
    if ranker is None:
        add_neighbour_ranker(model_dir)
        return record
    rankers = load_rankers(ranker)
    database = NeighbourDatabase.from_records(records, str(pairs))
    mismatch = fitted_for(rankers, database)
    if mismatch:
        raise ValueError(f"{ranker}: {mismatch} of {pairs}; fit it on that file (t2m ranker --database {pairs})")
    for fitted in rankers.values():
        fitted.fitted_on.update(database=MEMORY_FILE, pairs_sha256=database.digest())
    save_rankers(model_dir / "ranker.json", rankers)
    meta["neighbours"]["ranker"] = "ranker.json"
    atomic_write_text(meta_file, json.dumps(meta, indent=2) + "\n")
    return record


def copy_model(run: Path, dest: Path, fit_ranker: bool = True, keep_float32: bool = False) -> None:
    """``run``/model (weights, tokenizer, configs, memory; no optimizer state) to ``dest``: its decoding
    defaults kept (the recommended ones where it has none), rankers refit on its memory (``fit_ranker``),
    weights stored in bfloat16 unless ``keep_float32``."""
    src = run / "model"
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in SHIPPED_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, tmp / name)
    if (run / "train_log.jsonl").is_file():
        shutil.copy2(run / "train_log.jsonl", tmp / "train_log.jsonl")
    meta_file = tmp / "t2m.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {"prompt_style": "textchem"}
    meta.setdefault("decoding", RECOMMENDED_DECODING)  # t2m train writes its recipe's; older checkpoints have none
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
    if fit_ranker:
        add_neighbour_ranker(tmp)
    if not keep_float32:
        store_weights_in_bf16(tmp / "model.safetensors")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def add_neighbour_ranker(model_dir: Path) -> None:
    """For a checkpoint that reads neighbours: fit the neighbour rankers on its memory
    (:mod:`t2m.neighbours.ranker`), write them to ``ranker.json`` and name them in ``t2m.json``."""
    import dataclasses

    meta_file = model_dir / "t2m.json"
    meta = json.loads(meta_file.read_text())
    fmt = NeighbourFormat.from_meta(meta)
    if fmt is None:
        return
    # fitted afresh on the memory alone: a ranker the checkpoint may already name is not loaded
    database = load_checkpoint_database(model_dir, dataclasses.replace(fmt, ranker=None))
    database.name = fmt.database  # as t2m.json names it (relative to the checkpoint), not where it was fitted
    fit_rankers(database, model_dir / "ranker.json")
    meta["neighbours"]["ranker"] = "ranker.json"
    atomic_write_text(meta_file, json.dumps(meta, indent=2) + "\n")


def store_weights_in_bf16(path: Path) -> None:
    """Rewrite a safetensors file with its float tensors in bfloat16 (half the size; ``load_model`` reads
    them back as float32, so decoding runs in float32 on every CPU)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in tensors.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.chmod(path.stat().st_mode)
    tmp.replace(path)


def _first_rows(test_file: Path, out: Path, rows: int | None) -> Path:
    if not rows:
        return test_file
    source = out / f"test_first{rows}.txt"
    lines = test_file.read_text(encoding="utf-8").splitlines()[: rows + 1]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return source


def run_settings(model: Path, test_file: Path, out: Path, jobs: int, rows: int | None,
                 beam_rows: int | None = None, tasks: tuple[str, ...] = ("text2mol", "mol2text")) -> dict:
    """Translate and score every setting of ``tasks``, one after the other, each split over ``jobs``
    worker processes (``t2m translate --jobs``); greedy on ``rows`` test rows (all when None), beam 5 on
    ``beam_rows`` (default: ``rows``). FCD compares 512-d activation statistics: on a few hundred rows it
    is not meaningful (and the covariance is singular), so subsets under 1,000 rows are scored without it."""
    out.mkdir(parents=True, exist_ok=True)
    rows_of = {1: rows, 5: beam_rows or rows}
    sources = {n: _first_rows(test_file, out, n) for n in set(rows_of.values())}
    results = {}
    for task, beams in SETTINGS:
        if task not in tasks:
            continue
        name = f"{task}_beam{beams}"
        pred = out / f"{name}.txt"
        cmd = [sys.executable, "-m", "t2m", "translate", "--task", task, "--model", str(model),
               "--input", str(sources[rows_of[beams]]), "--output", str(pred), "--num-beams", str(beams),
               "--jobs", str(jobs)]
        print(" ".join(cmd[1:]), flush=True)
        started = time.time()
        with (out / f"{name}.log").open("w") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise RuntimeError(f"translation {task} beam {beams} failed: see {out / f'{name}.log'}")
        seconds = time.time() - started
        n = rows_of[beams]
        fcd_args = ["--no-fcd"] if task == "text2mol" and n and n < 1000 else []
        results[name] = {**score(pred, task, out / f"{name}.json", fcd_args), "seconds": seconds,
                         "workers": jobs if jobs > 1 else None, "machine": machine_name()}
    return results


def machine_name() -> str:
    """The CPU this runs on, as the model card names it (model name and its widest vector unit)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "CPU")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model}, {vector}, {cpu_count()} cores"


def kept_sections(card: str, tasks: tuple[str, ...]) -> list[str]:
    """The score sections (``### TASK, ...`` to the next heading) of an existing model card whose task is
    not in ``tasks``: they are carried over unchanged when only ``tasks`` are measured again."""
    sections, current = [], None
    for line in card.splitlines():
        if line.startswith("#"):
            if current is not None:
                sections.append("\n".join(current).rstrip() + "\n")
            heading_task = line[4:].split(",", 1)[0] if line.startswith("### ") else None
            current = [line] if heading_task and heading_task not in tasks else None
        elif current is not None:
            current.append(line)
    if current is not None:
        sections.append("\n".join(current).rstrip() + "\n")
    return sections


def score(pred: Path, task: str, target: Path, extra_args: list[str] | None = None) -> dict:
    """``t2m eval PRED --task TASK --json TARGET``: the printed table and the JSON."""
    report = subprocess.run([sys.executable, "-m", "t2m", "eval", str(pred), "--task", task, "--json", str(target),
                             *(extra_args or [])], capture_output=True, text=True, check=True)
    return {"table": report.stdout.strip(), "json": json.loads(target.read_text())}


def results_from_bench(bench_dirs: list[Path], out: Path) -> dict:
    """The model's own test-split predictions from ``t2m bench`` runs of this checkpoint (``model@greedy``
    and ``model`` at beam 5, text2mol reranked to valid SMILES; each from the first folder that has it),
    scored again by ``t2m eval --json``; the decoding time is the bench's (one process per task with
    ``--jobs``)."""
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for task, beams in SETTINGS:
        safe = "model_greedy" if beams == 1 else "model"
        found = [p for d in bench_dirs for p in sorted(d.glob(f"**/predictions/{task}/{safe}.tsv"))]
        if not found:
            raise FileNotFoundError(f"{', '.join(map(str, bench_dirs))}: no predictions/{task}/{safe}.tsv "
                                    "(run t2m bench with --beams 1,5)")
        pred = found[0]
        sidecar = json.loads(pred.with_suffix(".json").read_text())  # the bench's record of the decoding
        results[f"{task}_beam{beams}"] = {**score(pred, task, out / f"{task}_beam{beams}.json"),
                                          "seconds": sidecar["seconds"], "source": str(pred),
                                          "workers": sidecar.get("memory", {}).get("workers")}
    return results


def mean_token_lengths(model_dir: Path, data_dir: Path) -> dict[str, float]:
    """Mean tokens per SMILES and per description (without the end token) of the checkpoint's tokenizer
    over ChEBI-20 validation and test: shorter sequences are faster everywhere downstream."""
    tokenizer = load_tokenizer(model_dir)
    rows = read_tsv_records(data_dir / "validation.txt") + read_tsv_records(data_dir / "test.txt")
    means = {}
    for column in ("smiles", "description"):
        ids = tokenizer([r[column] for r in rows], add_special_tokens=False)["input_ids"]
        means[column] = round(sum(map(len, ids)) / len(ids), 1)
    return means


def default_systems_from_bench(bench_dirs: Sequence[Path], tasks: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per task, the best system ``t2m translate`` can run by default as measured by the first of the
    ``t2m bench`` folders whose ``bench.json`` has the task (:func:`t2m.bench.verdicts.best_default_system`):
    {task: {"system", "translate", "metrics", "scores", "rows", "beam"}}."""
    chosen: dict[str, dict[str, Any]] = {}
    for folder in bench_dirs:
        for bench_file in sorted(Path(folder).glob("**/bench.json")):
            bench = json.loads(bench_file.read_text())
            for task, part in bench.get("tasks", {}).items():
                best = best_default_system(task, part.get("systems", {})) if task in tasks else None
                if best is not None and task not in chosen:
                    chosen[task] = {**best, "rows": part.get("rows"), "beam": part.get("headline_beam"),
                                    "bench": str(bench_file)}
    return chosen


def set_default_systems(model_dir: Path, chosen: dict[str, dict[str, Any]]) -> None:
    """Write ``t2m.json`` "system" (what ``t2m translate`` runs by default) from :func:`default_systems_from_bench`."""
    meta_file = model_dir / "t2m.json"
    meta = json.loads(meta_file.read_text())
    meta["system"] = {**meta.get("system", {}), **{task: c["translate"] for task, c in chosen.items()}}
    atomic_write_text(meta_file, json.dumps(meta, indent=2) + "\n")


def system_lines(meta: dict) -> list[str]:
    """The model card's line on what ``t2m translate`` runs by default."""
    systems = meta.get("system", {})
    if not systems:
        return []
    said = "; ".join(f"{task}: `{system}`" for task, system in sorted(systems.items()))
    return [f"- default system of `t2m translate` (t2m.json \"system\", the best `t2m bench` measured on the test "
            f"split: mean of BLEU-4 and METEOR / Morgan and MACCS FTS): {said}. `--system model` runs the T5."]


def memory_lines(meta: dict, trained_on: dict) -> list[str]:
    """The model card's lines on the checkpoint's memory: the pairs it retrieves from, their source and license."""
    neighbours = meta["neighbours"]
    memory = neighbours.get("memory")
    if memory is None:  # the training pairs, as t2m train wrote them
        return [f"- `{neighbours.get('database', 'memory.tsv')}`: the {trained_on.get('sizes', {}).get('train', 'n/a')} "
                f"training pairs it retrieves from ({trained_on.get('sources', {}).get('train', '')}), ChEBI-20 format.",
                "- source: ChEBI-20 (Edwards et al., 2021; blender-nlp/MolT5 `ChEBI-20_data`, BSD-3-Clause), molecules "
                "from PubChem and descriptions from ChEBI (CC BY 4.0)."]
    official = memory["git_blob"] == OFFICIAL_TRAIN_BLOB
    what = ("ChEBI-20 `train.txt`, the official train split, byte for byte MolT5's file" if official
            else f"`{memory['source']}`")
    lines = [f"- `{neighbours['database']}`: the {memory['rows']:,} pairs it retrieves from: {what} (git blob "
             f"{memory['git_blob']}, sha256 {memory['sha256'][:12]}… of the uncompressed file; `xz -dk` gives it back), "
             "ChEBI-20 format (CID, SMILES, description), xz-compressed.",
             "- source: ChEBI-20 (Edwards et al., 2021; blender-nlp/MolT5 `ChEBI-20_data`, BSD-3-Clause), molecules "
             "from PubChem and descriptions from ChEBI (CC BY 4.0)."]
    trained = trained_on.get("sizes", {}).get("train")
    if trained and trained != memory["rows"]:
        lines.append(f"- the T5 was trained reading neighbours from {trained:,} pairs "
                     f"({trained_on.get('sources', {}).get('train', '')}); it now reads them from this memory.")
    return lines


def ranker_lines(meta: dict) -> list[str]:
    """The model card's line on the checkpoint's neighbour rankers (none without them)."""
    ranker = meta.get("neighbours", {}).get("ranker")
    if not ranker:
        return []
    return [f"- ranker: `{ranker}`, boosted regression trees (`t2m.neighbours.ranker`, fitted on the memory itself by "
            "`t2m ranker`) that choose, among the 8 nearest pairs, the one whose target is likely closest to the truth; "
            "the model reads that pair, and `t2m translate --system retrieval` answers with its target (no model)."]


def model_card(dest: Path, run: Path, results: dict, history: str | None = None, kept: list[str] | None = None,
               token_lengths: dict[str, float] | None = None) -> str:
    config = json.loads((dest / "training_config.json").read_text())
    state = json.loads((dest / "trainer_state.json").read_text())
    model_config = json.loads((dest / "config.json").read_text())
    log = [json.loads(line) for line in (dest / "train_log.jsonl").read_text().splitlines()] if (dest / "train_log.jsonl").is_file() else []
    speeds = [r["tokens_per_s"] for r in log if "tokens_per_s" in r and r["step"] > 20]
    peaks = [r["peak_rss_mb"] for r in log if "peak_rss_mb" in r]
    n_params = None
    try:
        from safetensors import safe_open

        with safe_open(str(dest / "model.safetensors"), "pt") as f:
            n_params = sum(f.get_slice(k).get_shape().numel() if hasattr(f.get_slice(k).get_shape(), "numel")
                           else __import__("math").prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception:  # noqa: BLE001 - the count is informative only
        pass
    meta = json.loads((dest / "t2m.json").read_text()) if (dest / "t2m.json").is_file() else {}
    trained_on = meta.get("training_data", {})
    if meta.get("neighbours"):
        lines = [
            "# t2m default model",
            "",
            "One shared-encoder T5 for both directions (text2mol and mol2text), Text+Chem T5 task prompts, that",
            f"reads in its input the nearest training pair of what it translates (its memory, `{meta['neighbours'].get('database', 'memory.tsv')}`) and",
            "has a copy head (`t2m.model.copy_head`: a pointer-generator mixture of the vocabulary and the input's",
            "tokens). Trained on this project's 2-core CPU in two stages: `t2m train --config",
            "t2m/recipes/default_model.json` (from scratch, no neighbours), then `t2m train --config",
            "t2m/recipes/retrieval_model.json` (warm-started from stage 1, neighbours in the input, copy head)",
            "and `t2m/recipes/retrieval_model_long.json` (the same run resumed on a longer schedule);",
            f"shipped by `t2m ship {run}`. Weights are stored in bfloat16 and",
            "loaded as float32.",
            "",
            "## Memory",
            "",
        ] + memory_lines(meta, trained_on) + [
            f"- neighbours: {meta['neighbours']['k']} per input, by Morgan Tanimoto (molecules) or TF-IDF cosine "
            "(descriptions); in training never the pair itself nor its molecule. `--database FILE` (Python: "
            "`Translator.from_pretrained(database=...)`) reads another pairs file.",
        ] + ranker_lines(meta) + system_lines(meta) + [
            "",
            "## Training (stage 2)",
            "",
            f"- data: ChEBI-20, **{state.get('setting', config.get('setting'))} setting**: "
            + ", ".join(f"{k} {v:,}" for k, v in trained_on.get("sizes", {}).items())
            + "; files (sha256): " + ", ".join(f"{k} {v[:12]}" for k, v in trained_on.get("files", {}).items()),
        ]
    else:
        lines = [
            "# t2m default model",
            "",
            "One shared-encoder T5 for both directions (text2mol and mol2text), Text+Chem T5 task prompts,",
            "trained from scratch on this project's 2-core CPU by `t2m train --config t2m/recipes/default_model.json`",
            "and shipped by `t2m ship runs/default_model`.",
            "",
            "## Training",
            "",
            f"- data: ChEBI-20, **{state.get('setting', config.get('setting'))} setting** (train = validation.txt minus "
            f"the {config.get('dev_size', 300)}-row dev slice, 3,001 pairs × 2 tasks; plus "
            f"{config.get('aux_unlabeled_per_epoch')} unlabeled molecules per epoch in a SMILES→SMILES task)",
        ]
    lines += [
        f"- model: T5 preset `{config['preset']}` (d_model {model_config['d_model']}, {model_config['num_layers']}+"
        f"{model_config['num_decoder_layers']} layers, d_ff {model_config['d_ff']}, {model_config['num_heads']} heads"
        + (f", {n_params / 1e6:.1f}M parameters" if n_params else "") + f"), vocabulary {model_config['vocab_size']} "
        "(SentencePiece unigram, byte fallback, shared by text and SMILES)",
    ]
    if token_lengths:
        lines.append(f"- tokens: mean {token_lengths['smiles']} per SMILES, {token_lengths['description']} per "
                     "description (ChEBI-20 validation and test, without the end token)")
    lines += [
        f"- steps: {state['step']} (epochs started: {state['epoch'] + 1}), batch {config['batch_size']}, AdamW lr "
        f"{config['lr']}, warm-up {config['warmup_steps']}, cosine decay, bf16 autocast: {config['bf16']}",
        f"- wall time: {state['elapsed_s'] / 60:.0f} min on 2 CPU cores shared with other work "
        f"(training threads and resumes as the run went)",
    ]
    if history:
        lines.append(f"- history: {history}")
    if speeds:
        lines.append(f"- training throughput: median {sorted(speeds)[len(speeds) // 2]:.0f} tokens/s (source+target tokens)")
    if peaks:
        lines.append(f"- peak resident memory: {max(peaks):.0f} MiB")
    lines += ["", "## Decoding", "",
              "`t2m.json` recommends " + "; ".join(f"{task}: " + ", ".join(f"`{k}={v}`" for k, v in opts.items())
                                             for task, opts in meta.get("decoding", {}).items())
              + " (captions otherwise loop on a phrase; SMILES on a motif until the length limit); "
              "`t2m translate` and `Translator` apply it unless given another value (`--no-repeat-ngram-size 0` "
              "switches it off). text2mol decoding is also kept to syntactically possible SMILES, finished "
              "within the length limit (`t2m.decoding.smiles_grammar`; `--no-smiles-syntax` switches it off), with legal "
              "valences and ring bonds (`t2m.decoding.smiles_valence`; `--no-smiles-valence`) and, at beam search, the best "
              "beam RDKit parses is chosen."]
    lines += ["", "## Scores on ChEBI-20 test, as `t2m eval` prints them", ""]
    for key, res in results.items():
        task, beams = key.split("_beam")
        n = res["json"]["n"]
        lines += [f"### {task}, {'greedy' if beams == '1' else 'beam ' + beams}"
                  + ((" (SMILES syntax and valence constraints and valid-SMILES reranking on)" if beams != "1" else
                      " (SMILES syntax and valence constraints on)") if task == "text2mol" else "")
                  + f", {'all ' if n == 3300 else 'first '}{n} test rows",
                  "", f"translation: {n / res['seconds']:.2f} inputs/s ({res['seconds']:.0f} s for {n} rows, "
                  + (f"{res['workers']} one-thread worker processes" if res.get("workers") else "1 process")
                  + (f" on {res['machine']}" if res.get("machine") else "")
                  + (f"; decoded by t2m bench: `{res['source']}`" if res.get("source") else "") + ")", "",
                  "```", res["table"], "```", ""]
    if kept:
        lines += ["The sections below are carried over from the previous card (the same model and decoding for "
                  "their task; their translation speed is as measured then).", ""]
    for section in kept or []:
        lines += [section]
    return "\n".join(lines) + "\n"


def ship_default_model(run: Path, data: str | Path | None = None, jobs: int = 2, rows: int | None = None,
                       beam_rows: int | None = None, history: str | None = None,
                       from_bench: Sequence[Path] | None = None, dest: Path | None = None, card_only: bool = False,
                       tasks: Sequence[str] = ("text2mol", "mol2text"), memory: Path | None = None,
                       memory_ranker: Path | None = None, keep_float32: bool = False) -> dict[str, Any]:
    """Copy ``run``/model to ``dest`` (default: the package's ``t2m/default_model``) unless ``card_only``,
    make ``memory`` (a pairs file) its memory when given (:func:`replace_memory`, with ``memory_ranker``),
    score it on the test split (or take the scores from the ``from_bench`` folders), and write its model
    card; returns {setting: metrics}, also written to ``run/eval/summary.json``."""
    run, tasks = Path(run), tuple(tasks)
    dest = default_model_dir() if dest is None else Path(dest)
    if set(tasks) != {"text2mol", "mol2text"} and not card_only:
        raise ValueError(f"tasks={','.join(tasks)}: fewer than both tasks needs card_only=True (a new model is scored on both)")
    test_file = resolve_chebi20_dir(data) / "test.txt"
    if not card_only:
        copy_model(run, dest, fit_ranker=memory is None, keep_float32=keep_float32)
    if memory is not None:
        replace_memory(dest, Path(memory), memory_ranker)
    if from_bench is not None:
        chosen = default_systems_from_bench(list(from_bench), tasks)
        if chosen:
            set_default_systems(dest, chosen)
        results = results_from_bench(list(from_bench), run / "eval")
        results = {k: v for k, v in results.items() if k.split("_beam")[0] in tasks}
    else:
        results = run_settings(dest, test_file, run / "eval", jobs, rows, beam_rows, tasks)
    card = dest / "README.md"
    kept = kept_sections(card.read_text(), tasks) if card.is_file() else []
    if history is None and card_only and card.is_file():  # the shipped model's history stays
        history = next((line[len("- history: "):] for line in card.read_text().splitlines()
                        if line.startswith("- history: ")), None)
    lengths = mean_token_lengths(dest, test_file.parent)
    atomic_write_text(card, model_card(dest, run, results, history, kept, lengths))
    summary = {k: v["json"]["metrics"] for k, v in results.items()}
    (run / "eval" / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
