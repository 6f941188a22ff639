"""Multitask training: a few real steps on a ChEBI-20 slice, resume, and a 2-process accelerate run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from t2m.model.precision import native_bf16
from t2m.training.trainer import TrainConfig, checkpoint_dirs, train, training_precision
from t2m.training.data import epoch_examples, load_training_data


def _config(tiny_chebi20: Path, tiny_tokenizer_dir: Path, out: Path, **kw) -> TrainConfig:
    base = dict(out_dir=str(out), data_dir=str(tiny_chebi20), setting="benchmark", dev_size=20,
                tokenizer=str(tiny_tokenizer_dir), preset="cpu-tiny", batch_size=8, max_source_len=96,
                max_target_len=96, max_steps=6, warmup_steps=2, log_every=1, eval_every=3, save_every=3,
                quick_eval_rows=2, aux_unlabeled_per_epoch=16, lr=3e-3, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_epoch_mixes_both_tasks_and_aux(tiny_chebi20, tiny_tokenizer_dir, tmp_path):
    config = _config(tiny_chebi20, tiny_tokenizer_dir, tmp_path)
    data = load_training_data(config)
    assert len(data.train) == 140 and len(data.dev) == 20
    examples = epoch_examples(data, config, epoch=0)
    tasks = [e[2] for e in examples]
    assert tasks.count("text2mol") == tasks.count("mol2text") == 140
    assert tasks.count("smiles2smiles") == 16
    assert examples[0][0].startswith("Write in SMILES the described molecule: ")
    assert examples[1][0].startswith("Caption the following SMILES: ")
    # the same epoch is the same examples (resume relies on it)
    assert epoch_examples(data, config, epoch=0) == examples


def test_back_translations_are_tagged_text2mol_pairs(tiny_chebi20, tiny_tokenizer_dir, tmp_path):
    """Tagged back-translation: synthetic (description, SMILES) pairs of unlabeled molecules train text2mol
    only, marked; a pair of a training molecule is dropped; their neighbours are training pairs of other
    molecules, found by the synthetic description."""
    from t2m.data import load_chebi20_unlabeled_records
    from t2m.chem import canonical_smiles
    from t2m.training.data import SYNTHETIC_TAG

    unlabeled = load_chebi20_unlabeled_records(tiny_chebi20)[:6]
    plain = load_training_data(_config(tiny_chebi20, tiny_tokenizer_dir, tmp_path / "plain"))
    train_row, copied = plain.train[-1], plain.train[-2]
    synthetic = tmp_path / "synthetic.tsv"
    rows = [(r["smiles"], f"The molecule is a synthetic description number {i}.") for i, r in enumerate(unlabeled)]
    rows.append((train_row["smiles"], "The molecule is a training molecule described again."))
    # a description copied from a training pair (as retrieval captions are) never sees that pair
    rows[0] = (rows[0][0], copied["description"])
    # as `t2m translate --task mol2text --output FILE.tsv` writes it (MolT5's columns; no ground truth)
    synthetic.write_text("SMILES\tground truth\toutput\n" + "".join(f"{s}\t\t{d}\n" for s, d in rows))
    config = _config(tiny_chebi20, tiny_tokenizer_dir, tmp_path / "run", aux_unlabeled_per_epoch=0, neighbours=1,
                     back_translations=str(synthetic), back_translations_per_epoch=4)
    data = load_training_data(config, cache_dir=tmp_path)
    assert len(data.synthetic) == 6  # the training molecule's pair is dropped
    assert data.described["back_translations"]["pairs"] == 6
    for pair, found in zip(data.synthetic, data.synthetic_neighbours):
        assert found and all(canonical_smiles(n.target, default=n.target) != canonical_smiles(pair["smiles"], default=pair["smiles"])
                             for n in found)
        assert all(n.source != pair["description"] for n in found)
    assert data.synthetic[0]["description"] == copied["description"]
    examples = epoch_examples(data, config, epoch=0)
    tasks = [e[2] for e in examples]
    assert tasks.count("text2mol") == 140 + 4 and tasks.count("mol2text") == 140
    marked = [e for e in examples if SYNTHETIC_TAG in e[0]]
    assert len(marked) == 4 and all(e[2] == "text2mol" for e in marked)
    assert all(e[0].startswith("Write in SMILES the described molecule: " + SYNTHETIC_TAG + "The molecule is")
               for e in marked)
    assert {e[1] for e in marked} <= {r["smiles"] for r in unlabeled}
    assert not any(SYNTHETIC_TAG in e[0] for e in examples if e not in marked)
    # the same draw for the same epoch (resume relies on it)
    assert epoch_examples(data, config, epoch=0) == examples
    # cached neighbours are reused; another file of as many pairs is searched anew
    assert (tmp_path / "synthetic_neighbours.json").is_file()
    assert load_training_data(config, cache_dir=tmp_path).synthetic_neighbours == data.synthetic_neighbours
    rows[1] = (rows[1][0], copied["description"])
    synthetic.write_text("SMILES\tground truth\toutput\n" + "".join(f"{s}\t\t{d}\n" for s, d in rows))
    again = load_training_data(config, cache_dir=tmp_path)
    assert again.synthetic_neighbours[1] != data.synthetic_neighbours[1]
    assert all(n.source != copied["description"] for n in again.synthetic_neighbours[1])


def test_train_saves_hf_checkpoints_and_resumes(tiny_chebi20, tiny_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    out = tmp_path / "run"
    final = train(_config(tiny_chebi20, tiny_tokenizer_dir, out, max_steps=3))
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                 "training_config.json", "trainer_state.json", "t2m.json"):
        assert (final / name).is_file(), name
    assert not list(final.glob("*.bin"))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert any("dev_loss" in r and "dev_validity" in r and "dev_bleu4" in r for r in log)
    assert [p.name for p in checkpoint_dirs(out)] == ["step-3"]

    # resume: a longer run picks up at step 3 with the saved optimizer state; max_minutes bounds each piece,
    # not the run's whole wall time (a run that has already trained for days still resumes)
    for saved in out.rglob("trainer_state.json"):
        saved.write_text(json.dumps(dict(json.loads(saved.read_text()), elapsed_s=1e6)))
    train(_config(tiny_chebi20, tiny_tokenizer_dir, out, max_steps=6, max_minutes=60))
    state = json.loads((out / "model" / "trainer_state.json").read_text())
    assert state["step"] == 6
    assert state["precision"] == training_precision(TrainConfig())
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r][-4:] == [3, 4, 5, 6]
    T5ForConditionalGeneration.from_pretrained(out / "model")
    AutoTokenizer.from_pretrained(out / "model")


def test_stop_at_step_keeps_the_schedule_of_max_steps(tiny_chebi20, tiny_tokenizer_dir, tmp_path):
    """A run stopped by stop_at_step is saved there with the learning rate of the max_steps schedule, and
    resumes to max_steps: how the shipped model's recipe reproduces a run trained in pieces."""
    whole, pieces = tmp_path / "whole", tmp_path / "pieces"
    train(_config(tiny_chebi20, tiny_tokenizer_dir, whole, max_steps=5, aux_unlabeled_per_epoch=0))
    train(_config(tiny_chebi20, tiny_tokenizer_dir, pieces, max_steps=5, stop_at_step=2, aux_unlabeled_per_epoch=0))
    assert json.loads((pieces / "model" / "trainer_state.json").read_text())["step"] == 2
    assert [p.name for p in checkpoint_dirs(pieces)] == ["step-2"]
    train(_config(tiny_chebi20, tiny_tokenizer_dir, pieces, max_steps=5, aux_unlabeled_per_epoch=0))
    rates = [{r["step"]: r["lr"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())
              if "lr" in r} for run in (whole, pieces)]
    assert rates[0] == rates[1] and sorted(rates[1]) == [1, 2, 3, 4, 5]


def test_bf16_only_where_native(caplog):
    """bf16 autocast is used where bf16 is native; elsewhere (AVX2-only CPUs emulate it, ~10x slower)
    training falls back to float32 and says so, unless the config forces it."""
    assert training_precision(TrainConfig(bf16=False)) == "no"
    assert training_precision(TrainConfig(bf16="force")) == "bf16"
    with caplog.at_level("WARNING", logger="t2m.training.trainer"):
        chosen = training_precision(TrainConfig(bf16=True))
    assert chosen == ("bf16" if native_bf16() else "no")
    assert ("no native bf16" in caplog.text) == (not native_bf16())
    with pytest.raises(ValueError, match="bf16"):
        training_precision(TrainConfig(bf16="yes"))


def test_config_file_and_cli(tiny_chebi20, tiny_tokenizer_dir, tmp_path):
    from t2m.cli import main

    cfg = _config(tiny_chebi20, tiny_tokenizer_dir, tmp_path / "cli", max_steps=2, eval_every=100).to_dict()
    path = tmp_path / "train.json"
    path.write_text(json.dumps(cfg))
    assert main(["train", "--config", str(path)]) == 0
    assert (tmp_path / "cli" / "model" / "model.safetensors").is_file()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"learning_rate": 1}))
    with pytest.raises(ValueError, match="bad.json: unknown training option"):
        TrainConfig.load(bad)


def test_two_process_accelerate_run(tiny_chebi20, tiny_tokenizer_dir, tmp_path):
    cfg = _config(tiny_chebi20, tiny_tokenizer_dir, tmp_path / "ddp", max_steps=2, eval_every=100, bf16=False)
    path = tmp_path / "ddp.json"
    path.write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # `--multi_gpu` on a machine without GPUs launches torchrun processes that accelerate runs as MULTI_CPU (gloo);
    # `--cpu` alone would start a single process.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "t2m", "train", "--config", str(path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((tmp_path / "ddp" / "model" / "trainer_state.json").read_text())
    assert state["step"] == 2
    # each optimizer step consumed one batch per process
    assert state["batch_in_epoch"] == 4


def _tiny_t5(dropout: float = 0.0):
    import torch
    from transformers import T5ForConditionalGeneration

    from t2m.model.checkpoint import make_config

    torch.manual_seed(0)
    return T5ForConditionalGeneration(make_config("cpu-tiny", vocab_size=300, dropout_rate=dropout))


def test_training_kernels_compute_the_stock_function():
    """t2m.model.kernels (the trainer's dropout, attention and gated FF) give the stock model's loss and
    gradients in float32 (dropout off), keep dropout's rate, and leave evaluation to the stock modules."""
    import copy

    import torch

    from t2m.model.kernels import ATTENTION_NAME, drop_mask, install

    stock = _tiny_t5()
    fast = copy.deepcopy(stock)
    assert install(fast) and fast.config._attn_implementation == ATTENTION_NAME
    ids = torch.randint(3, 300, (3, 17))
    mask = torch.ones_like(ids)
    mask[0, 11:] = 0  # padding in the source
    labels = torch.randint(3, 300, (3, 9))
    labels[1, 6:] = -100
    for model in (stock, fast):
        model.train()
    grads = []
    for model in (stock, fast):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        grads.append((loss.detach(), torch.autograd.grad(loss, list(model.parameters()))))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-5)
    for a, b in zip(grads[0][1], grads[1][1]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    rate = drop_mask((1000, 1000), 0.1).float().mean().item()
    assert abs(rate - 0.1) < 2e-3
    for model in (stock, fast):
        model.eval()
    with torch.no_grad():
        same = [model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
                for model in (stock, fast)]
    assert torch.equal(same[0], same[1])
    # evaluation=True: the same attention in evaluation (a datastore build's teacher-forced pass)
    evaluating = copy.deepcopy(stock)
    assert install(evaluating, evaluation=True)
    with torch.no_grad():
        logits = [model(input_ids=ids, attention_mask=mask, labels=labels).logits for model in (stock, evaluating)]
    assert torch.allclose(logits[0], logits[1], atol=1e-5, rtol=1e-4)


def test_micro_batches_keep_the_batch_loss():
    """A batch split into micro-batches (padded each to its own length) gives the whole batch's loss and
    gradient when the parts' losses are weighted by their target tokens, as the trainer weights them."""
    import torch

    from t2m.decoding.batching import activation_mb, collate, micro_batches

    model = _tiny_t5()
    model.train()
    pairs = [([5 + i] * (4 + 3 * i) + [1], [7] * (2 + i) + [1]) for i in range(8)]
    whole = micro_batches(pairs, None, model.config)
    assert whole == [pairs]
    budget = activation_mb(3, 32, 16, model.config)
    parts = micro_batches(pairs, budget, model.config, multiple=8)
    assert len(parts) > 1 and sorted(p for part in parts for p in part) == sorted(pairs)
    assert all(activation_mb(len(part), 8 * -(-max(len(p[0]) for p in part) // 8),
                             8 * -(-max(len(p[1]) for p in part) // 8), model.config) <= budget for part in parts)

    def loss_and_grad(groups):
        targets = sum(len(p[1]) for p in pairs)
        total = 0.0
        for group in groups:
            batch = collate(*zip(*group), 0, 8)
            loss = model(**batch).loss * (sum(len(p[1]) for p in group) / targets)
            loss.backward()
            total += loss.detach().item()
        grad = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        return total, grad

    (a, ga), (b, gb) = loss_and_grad([pairs]), loss_and_grad(parts)
    assert abs(a - b) < 1e-5
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-5, rtol=1e-4)


def test_dev_numbers_are_t2m_evals_on_the_same_outputs(tiny_chebi20, tiny_tokenizer_dir, tiny_model_dir, tmp_path):
    """The trainer's quick dev evaluation decodes through Translator.decode and its dev BLEU-4, exact match and
    validity are `t2m eval`'s on the same outputs (real ChEBI-20 dev rows): the model's greedy outputs, and the
    same with every other row replaced by its reference (so that BLEU-4 and exact match are not 0)."""
    from t2m.cli import main
    from t2m.decoding.translator import Translator
    from t2m.model.checkpoint import RECOMMENDED_DECODING, load_model
    from t2m.options import DecodingOptions
    from t2m.training.trainer import quick_dev_metrics, quick_dev_outputs, quick_dev_scores

    data = load_training_data(_config(tiny_chebi20, tiny_tokenizer_dir, tmp_path / "run"))
    model, tokenizer, info = load_model(tiny_model_dir)
    outputs = quick_dev_outputs(model, tokenizer, data, 8, 40, RECOMMENDED_DECODING)
    assert sorted(outputs) == ["mol2text", "text2mol"] and all(len(o[1]) == 8 for o in outputs.values())
    # the decoding is Translator's: the same inputs translated by it give the same outputs
    translator = Translator(model, tokenizer, info)
    sources = [data.dev[i]["smiles"] for i in range(8)]
    translated = translator.translate(sources, "mol2text", DecodingOptions(max_new_tokens=40,
                                      no_repeat_ngram_size=RECOMMENDED_DECODING["mol2text"]["no_repeat_ngram_size"]))
    assert [t.output for t in translated] == outputs["mol2text"][1]
    assert quick_dev_metrics(model, tokenizer, data, 8, 40, RECOMMENDED_DECODING) == quick_dev_scores(data, outputs)
    assert model.training  # back to training

    half_gold = {task: (refs, [r if i % 2 else o for i, (r, o) in enumerate(zip(refs, outs))])
                 for task, (refs, outs) in outputs.items()}
    for case in (outputs, half_gold):
        dev = quick_dev_scores(data, case)
        evaluated = {}
        for task, (refs, outs) in case.items():
            predictions, report = tmp_path / f"{task}.jsonl", tmp_path / f"{task}.json"
            predictions.write_text("".join(json.dumps({"task": task, "reference": r, "output": o}) + "\n"
                                           for r, o in zip(refs, outs)), encoding="utf-8")
            assert main(["eval", str(predictions), "--json", str(report), "--no-fcd", "--no-cache"]) == 0
            evaluated[task] = json.loads(report.read_text())["metrics"]
        assert dev["dev_bleu4"] == evaluated["mol2text"]["bleu4"]
        assert dev["dev_exact"] == evaluated["text2mol"]["exact_match"]
        assert dev["dev_validity"] == evaluated["text2mol"]["validity"]
    assert dev["dev_bleu4"] > 0.3 and dev["dev_exact"] >= 0.5
