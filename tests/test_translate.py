"""Translator: batching, beams and n-best, valid-SMILES reranking, bad inputs, outside checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from t2m.decoding.translator import FLAG_EMPTY, FLAG_INVALID_INPUT, FLAG_NO_VALID, FLAG_TRUNCATED, Translator
from t2m.decoding.smiles_grammar import FLAG_UNFINISHED
from t2m.model.checkpoint import load_model, read_checkpoint_info
from t2m.options import DecodingOptions, SmilesConstraints


@pytest.fixture(scope="module")
def translator(tiny_model_dir):
    torch.manual_seed(0)
    return Translator.from_pretrained(tiny_model_dir)


def test_both_tasks_batched_greedy_and_beam(translator, tiny_chebi20):
    from t2m.data import read_tsv_records

    rows = read_tsv_records(tiny_chebi20 / "test.txt")[:5]
    out = translator.translate([r["description"] for r in rows], "text2mol",
                               DecodingOptions(max_new_tokens=12, batch_size=2))
    assert len(out) == 5 and all(isinstance(t.output, str) for t in out)
    beams = translator.translate([r["smiles"] for r in rows], "mol2text",
                                 DecodingOptions(num_beams=3, num_return_sequences=3, max_new_tokens=10, batch_size=4))
    assert all(len(t.candidates) == 3 for t in beams)
    assert all(t.scores is not None and t.scores == sorted(t.scores, reverse=True) for t in beams)
    # results come back in input order whatever the length-sorted batching did
    again = translator.translate([rows[3]["smiles"]], "mol2text",
                                 DecodingOptions(num_beams=3, num_return_sequences=3, max_new_tokens=10))
    assert again[0].candidates == beams[3].candidates


def test_bad_inputs_are_flagged_and_the_rest_translated(translator, caplog):
    long_text = "The molecule is " + "a very long description " * 400
    out = translator.translate(["", "CCO", "C1CC(", long_text], "mol2text", DecodingOptions(max_new_tokens=5))
    assert out[0].flags == [FLAG_EMPTY] and out[0].output == ""
    only_empty = translator.translate(["", "  "], "text2mol")
    assert [t.flags for t in only_empty] == [[FLAG_EMPTY], [FLAG_EMPTY]]
    assert out[1].flags == []
    assert FLAG_INVALID_INPUT in out[2].flags and out[2].output is not None
    assert FLAG_TRUNCATED in out[3].flags
    assert "row 4" in caplog.text and "row 3" in caplog.text and "row 1" in caplog.text


def test_valid_smiles_reranking_picks_best_parsable_beam(translator):
    chosen = translator._finish(["C1CC(", "CCO", "CCN"], [-1.0, -2.0, -3.0], "text2mol", True, False)
    assert chosen.output == "CCO" and chosen.flags == []
    none_valid = translator._finish(["C1CC(", "((", ""], None, "text2mol", True, False)
    assert none_valid.output == "C1CC(" and none_valid.flags == [FLAG_NO_VALID, FLAG_UNFINISHED]  # ... and why
    canon = translator._finish(["OCC"], None, "text2mol", True, True)
    assert canon.output == "CCO"
    # end to end: a random tiny model rarely writes valid SMILES; every row is either valid or flagged
    out = translator.translate(["The molecule is ethanol."] * 2, "text2mol", DecodingOptions(num_beams=4, max_new_tokens=8))
    from t2m.chem import is_valid_smiles

    assert all(is_valid_smiles(t.output) or FLAG_NO_VALID in t.flags for t in out)
    assert all(len(t.candidates) == 4 for t in out)


def _t5_style_spiece(texts, path: Path) -> None:
    """A SentencePiece model trained the way T5's own vocabulary is (NFKC, no byte fallback)."""
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=model, vocab_size=500,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    path.write_bytes(model.getvalue())


@pytest.mark.parametrize("name,style", [("molt5-tiny-smiles2caption", "none"), ("multitask-text-and-chemistry-t5-tiny", "textchem")])
def test_outside_checkpoint_with_t5_sentencepiece(tmp_path, tiny_chebi20, name, style):
    """A hub-style T5 directory (config + weights + spiece.model, no t2m.json) loads and translates."""
    from transformers import T5Config, T5ForConditionalGeneration

    from t2m.data import read_tsv_records

    rows = read_tsv_records(tiny_chebi20 / "validation.txt")
    ckpt = tmp_path / name
    ckpt.mkdir()
    _t5_style_spiece([r["description"] for r in rows] + [r["smiles"] for r in rows], ckpt / "spiece.model")
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 0}))
    torch.manual_seed(0)
    config = T5Config(vocab_size=500, d_model=32, d_ff=64, d_kv=8, num_layers=1, num_heads=2,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    T5ForConditionalGeneration(config).save_pretrained(ckpt)
    assert read_checkpoint_info(ckpt).prompt_style == style
    translator = Translator.from_pretrained(ckpt)
    assert translator.info.prompt_style == style
    tokens = translator.tokenizer.convert_ids_to_tokens(translator.tokenizer("The molecule is")["input_ids"])
    assert "<unk>" not in tokens  # the T5 SentencePiece vocabulary is really used
    out = translator.translate([rows[0]["smiles"]], "mol2text", DecodingOptions(max_new_tokens=6))
    assert len(out) == 1 and isinstance(out[0].output, str)


def test_pickled_weights_need_opt_in(tiny_model_dir, tmp_path):
    from transformers import T5ForConditionalGeneration

    ckpt = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, ckpt)
    model = T5ForConditionalGeneration.from_pretrained(ckpt)
    (ckpt / "model.safetensors").unlink()
    torch.save(model.state_dict(), ckpt / "pytorch_model.bin")
    with pytest.raises(PermissionError, match="allow_pickle=True"):
        load_model(ckpt)
    loaded, _, _ = load_model(ckpt, allow_pickle=True)
    assert torch.equal(loaded.shared.weight, model.shared.weight)


def test_cli_translates_a_chebi20_file_to_molt5_tsv(tiny_model_dir, tiny_chebi20, tmp_path):
    from t2m.cli import main

    src = tmp_path / "in.txt"
    lines = (tiny_chebi20 / "test.txt").read_text().splitlines()[:4]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "pred.txt"
    assert main(["translate", "--task", "text2mol", "--model", str(tiny_model_dir), "--input", str(src),
                 "--output", str(out), "--max-new-tokens", "6", "--num-beams", "2"]) == 0
    got = out.read_text().splitlines()
    assert got[0] == "description\tground truth\toutput"
    assert len(got) == 4
    # the ground truth is the unescaped SMILES of the input row
    first = lines[1].split("\t")
    assert got[1].split("\t")[1] == first[1].replace("\\\\", "\\")

    text_out = tmp_path / "captions.txt"
    plain = tmp_path / "smiles.txt"
    plain.write_text("CCO\nc1ccccc1\n")
    assert main(["translate", "--task", "mol2text", "--model", str(tiny_model_dir), "--input", str(plain),
                 "--output", str(text_out), "--max-new-tokens", "5"]) == 0
    assert len(text_out.read_text().splitlines()) == 2


def test_cli_jobs_split_the_file_and_give_one_process_outputs(tiny_model_dir, tiny_chebi20, tmp_path, caplog):
    """``--jobs 2``: two worker processes share the rows; the file is the one a single process writes,
    and a bad input's warning names its row of the file, not of a worker's chunk."""
    from t2m.cli import main

    src = tmp_path / "in.txt"
    lines = (tiny_chebi20 / "test.txt").read_text().splitlines()[:7]
    src.write_text("\n".join(lines) + "\n")
    outs = {}
    for jobs in ("1", "2"):
        outs[jobs] = tmp_path / f"pred{jobs}.txt"
        assert main(["translate", "--task", "text2mol", "--model", str(tiny_model_dir), "--input", str(src),
                     "--output", str(outs[jobs]), "--max-new-tokens", "12", "--num-beams", "2", "--jobs", jobs]) == 0
    assert outs["1"].read_text() == outs["2"].read_text()
    plain = tmp_path / "smiles.txt"
    plain.write_text("CCO\nc1ccccc1\n\nCCN\n")
    with caplog.at_level("WARNING"):
        assert main(["translate", "--task", "mol2text", "--model", str(tiny_model_dir), "--input", str(plain),
                     "--output", str(tmp_path / "captions.txt"), "--max-new-tokens", "5", "--jobs", "2"]) == 0
    assert "row 3: empty input" in caplog.text


def test_cli_jsonl_in_and_out(tiny_model_dir, tmp_path):
    from t2m.cli import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"cid": "1", "smiles": "CCO", "description": "ethanol"}) + "\n")
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text(json.dumps({"input": "CCO"}) + "\n" + json.dumps({"input": ""}) + "\n")
    for src, n in ((pairs, 1), (inputs, 2)):
        out = tmp_path / f"out-{src.name}"
        assert main(["translate", "--task", "mol2text", "--model", str(tiny_model_dir), "--input", str(src),
                     "--output", str(out), "--max-new-tokens", "4"]) == 0
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == n and rows[0]["input"] == "CCO"
    assert rows[1]["flags"] == ["empty input"]


def test_checkpoint_decoding_defaults_apply_per_task_and_can_be_switched_off(tiny_model_dir, tmp_path, translator):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    meta = json.loads((model_dir / "t2m.json").read_text())
    meta["decoding"] = {"mol2text": {"no_repeat_ngram_size": 2}}
    (model_dir / "t2m.json").write_text(json.dumps(meta))
    with_defaults = Translator.from_pretrained(model_dir)
    assert with_defaults.decoding_defaults("mol2text") == {"no_repeat_ngram_size": 2}
    assert with_defaults.decoding_options("text2mol") == {}
    assert with_defaults.decoding_options("mol2text", no_repeat_ngram_size=0) == {}

    sources = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    plain = translator.translate(sources, "mol2text", DecodingOptions(max_new_tokens=40))
    blocked = with_defaults.translate(sources, "mol2text", DecodingOptions(max_new_tokens=40))
    # a random tiny model loops (here on the pad token, decoded as ""); the checkpoint's default changes that,
    # exactly as passing the option by hand does
    assert [t.output for t in plain] != [t.output for t in blocked]
    by_hand = translator.translate(sources, "mol2text", DecodingOptions(max_new_tokens=40, no_repeat_ngram_size=2))
    assert [t.output for t in blocked] == [t.output for t in by_hand]
    switched_off = with_defaults.translate(sources, "mol2text", DecodingOptions(max_new_tokens=40, no_repeat_ngram_size=0))
    assert [t.output for t in switched_off] == [t.output for t in plain]
    # text2mol has no default in this checkpoint: unchanged
    twenty = DecodingOptions(max_new_tokens=20)
    assert [t.output for t in with_defaults.translate(["The molecule is ethanol."], "text2mol", twenty)] \
        == [t.output for t in translator.translate(["The molecule is ethanol."], "text2mol", twenty)]


def test_bad_decoding_section_names_the_file(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    meta = json.loads((model_dir / "t2m.json").read_text())
    for bad, what in (({"num_beam": 9}, "num_beam"), ({"num_beams": 0}, "num_beams=0: must be 1 or more"),
                      ({"syntax": True, "top_p": 2.0}, "top_p")):
        meta["decoding"] = {"mol2text": bad}
        (model_dir / "t2m.json").write_text(json.dumps(meta))
        with pytest.raises(ValueError, match=rf"t2m\.json.*mol2text.*{what}"):
            read_checkpoint_info(model_dir)


def test_options_are_objects_only_and_bad_values_name_the_field(translator, tiny_chebi20):
    """translate(texts, task, DecodingOptions(...), SmilesConstraints(...)) is the one way to ask: a field
    given by name as a keyword is refused, and a value out of range names its field."""
    from t2m.data import read_tsv_records
    from t2m.errors import OptionError

    rows = read_tsv_records(tiny_chebi20 / "test.txt")[:4]
    texts = [r["description"] for r in rows]
    by_objects = translator.translate(texts, "text2mol", DecodingOptions(num_beams=3, max_new_tokens=16),
                                      SmilesConstraints(valid_smiles=False, valence=False, canonicalize=True))
    assert len(by_objects) == 4 and all(isinstance(t.output, str) for t in by_objects)
    with pytest.raises(TypeError, match="num_beams"):
        translator.translate(texts, "text2mol", num_beams=3)
    with pytest.raises(OptionError, match=r"top_p=0\.0: must be in \(0, 1\]"):
        DecodingOptions(top_p=0.0)
    with pytest.raises(OptionError, match="num_return_sequences=3 needs num_beams=3 or more"):
        translator.translate(texts, "text2mol", DecodingOptions(num_beams=2, num_return_sequences=3))


def test_checkpoint_sets_the_defaults_of_every_option(tiny_model_dir, tmp_path, translator):
    """t2m.json "decoding" may set any field of DecodingOptions / SmilesConstraints per task; a call's own value
    wins wherever it differs from the field's default (as transformers merges a model's generation config)."""
    from t2m.options import DecodingOptions, SmilesConstraints

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    meta = json.loads((model_dir / "t2m.json").read_text())
    meta["decoding"] = {"text2mol": {"num_beams": 3, "max_new_tokens": 12, "valid_smiles": False},
                        "mol2text": {"no_repeat_ngram_size": 2}}
    (model_dir / "t2m.json").write_text(json.dumps(meta))
    recommending = Translator.from_pretrained(model_dir)
    decoding, constraints = recommending.options("text2mol")
    assert (decoding.num_beams, decoding.max_new_tokens, constraints.valid_smiles) == (3, 12, False)
    assert recommending.options("text2mol", DecodingOptions(num_beams=4))[0].num_beams == 4
    assert recommending.options("mol2text")[0] == DecodingOptions(no_repeat_ngram_size=2)
    texts = ["The molecule is an alcohol.", "The molecule is a carboxylic acid."]
    assert [t.to_dict() for t in recommending.translate(texts, "text2mol")] == [
        t.to_dict() for t in translator.translate(texts, "text2mol", DecodingOptions(num_beams=3, max_new_tokens=12),
                                                  SmilesConstraints(valid_smiles=False))]


def test_beam_search_without_per_beam_source_copies_gives_the_same_beams(translator, tiny_chebi20, monkeypatch):
    """t2m.decoding.fast (no cross-attention cache reordering, one source copy per input) against
    transformers' own beam search: the same beams, scores equal up to float rounding, and the model's
    attention implementation restored afterwards."""
    import contextlib

    import t2m.decoding.fast as fast_decoding
    from t2m.data import read_tsv_records

    rows = read_tsv_records(tiny_chebi20 / "test.txt")[:6]
    own = translator.model.decoder.block[0].layer[1].EncDecAttention.config._attn_implementation
    for task, sources in (("mol2text", [r["smiles"] for r in rows]), ("text2mol", [r["description"] for r in rows])):
        decoding = DecodingOptions(num_beams=4, num_return_sequences=4, max_new_tokens=24, batch_size=4)
        fast = translator.translate(sources, task, decoding)
        # transformers' own cache and attention
        monkeypatch.setattr(fast_decoding, "fast_decoding", lambda model, beams: contextlib.nullcontext({}))
        plain = translator.translate(sources, task, decoding)
        monkeypatch.undo()
        assert [t.candidates for t in fast] == [t.candidates for t in plain]
        for a, b in zip(fast, plain):
            assert a.scores == pytest.approx(b.scores, abs=1e-5)
    assert translator.model.decoder.block[0].layer[1].EncDecAttention.config._attn_implementation == own


def test_shared_cross_attention_matches_the_models_attention(translator):
    """One decoder step by hand: cross-attention outputs with and without the shared copy agree."""
    from t2m.decoding.fast import shared_cross_attention

    model = translator.model
    enc = translator.tokenizer(["CCO", "c1ccccc1CC(=O)O", "N"], return_tensors="pt", padding=True)
    beams = 3
    encoder_out = model.encoder(**enc).last_hidden_state.repeat_interleave(beams, 0)
    mask = enc["attention_mask"].repeat_interleave(beams, 0)
    decoder_ids = torch.randint(2, 50, (3 * beams, 5))
    with torch.inference_mode():
        want = model(encoder_outputs=(encoder_out,), attention_mask=mask, decoder_input_ids=decoder_ids).logits
        with shared_cross_attention(model, beams) as applied:
            got = model(encoder_outputs=(encoder_out,), attention_mask=mask, decoder_input_ids=decoder_ids).logits
    assert applied
    assert torch.allclose(got, want, atol=1e-5)


def test_length_rounds():
    from t2m.decoding.fast import length_rounds

    assert length_rounds(256, 64) == [64, 128, 256]
    assert length_rounds(200, 64) == [64, 128, 200]
    assert length_rounds(128, 64) == [64, 128]
    assert length_rounds(48, 64) == [48]
    assert length_rounds(48, 0) == length_rounds(48, None) == [48]
    with pytest.raises(ValueError, match="max_new_tokens"):
        length_rounds(0, 8)


@pytest.mark.parametrize("task,beams", [("text2mol", 1), ("text2mol", 4), ("mol2text", 4)])
def test_decoding_in_length_rounds_gives_one_rounds_results(tiny_chebi20, task, beams):
    """The shipped model on real rows: decoding in rounds of 32, 64, 96 new tokens (only unfinished inputs
    go on to the next round) returns the same candidates and scores as one round of 96 -- and some inputs
    finished early and some did not, so the rounds were exercised."""
    from t2m.data import read_tsv_records

    translator = Translator.from_pretrained()
    rows = read_tsv_records(tiny_chebi20 / "test.txt")[:10]
    sources = [r["description"] if task == "text2mol" else r["smiles"] for r in rows]
    limits = []
    generate = translator.model.generate

    def counting_generate(*args, **kwargs):
        limits.append((kwargs["max_new_tokens"], len(kwargs["input_ids"])))
        return generate(*args, **kwargs)

    translator.model.generate = counting_generate
    decoding = dict(num_beams=beams, max_new_tokens=96, batch_size=4)
    rounds = translator.translate(sources, task, DecodingOptions(first_round_tokens=32, **decoding))
    assert [limit for limit, _ in limits][:3] == [32, 32, 32]
    per_round = {limit: sum(n for lim, n in limits if lim == limit) for limit in (32, 64, 96)}
    assert per_round[32] == len(sources) and per_round[64] > 0  # some went on
    assert per_round[96] < len(sources)  # some finished before the last round
    one = translator.translate(sources, task, DecodingOptions(first_round_tokens=0, **decoding))
    assert [t.candidates for t in rounds] == [t.candidates for t in one]
    for a, b in zip(rounds, one):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_growing_cache_layer_holds_what_transformers_dynamic_layer_holds():
    """GrowingLayer against DynamicLayer through appends past its chunk size, beam reorders, crop and the
    batch expansion / selection generate uses: the same keys and values after every operation."""
    from transformers.cache_utils import DynamicLayer

    from t2m.decoding.fast import _growing_layer_class

    generator = torch.Generator().manual_seed(0)
    growing, plain = _growing_layer_class()(), DynamicLayer()

    def same():
        assert growing.get_seq_length() == plain.get_seq_length()
        assert torch.equal(growing.keys, plain.keys) and torch.equal(growing.values, plain.values)

    for step in range(70):  # > 2 chunks of 32
        n = 5 if step == 0 else 1  # a prompt of 5 positions, then one per step
        k, v = torch.randn(6, 2, n, 4, generator=generator), torch.randn(6, 2, n, 4, generator=generator)
        out_growing, out_plain = growing.update(k, v), plain.update(k, v)
        assert torch.equal(out_growing[0], out_plain[0]) and torch.equal(out_growing[1], out_plain[1])
        if step % 3 == 1:
            order = torch.randint(0, 6, (6,), generator=generator)
            growing.reorder_cache(order)
            plain.reorder_cache(order)
        same()
    growing.crop(-4)
    plain.crop(-4)
    same()
    growing.batch_repeat_interleave(2)
    plain.batch_repeat_interleave(2)
    same()
    keep = torch.tensor([0, 3, 7, 11])
    growing.batch_select_indices(keep)
    plain.batch_select_indices(keep)
    same()
    k, v = torch.randn(4, 2, 1, 4, generator=generator), torch.randn(4, 2, 1, 4, generator=generator)
    growing.update(k, v)
    plain.update(k, v)
    same()


def test_decode_pool_workers_leave_when_their_parent_is_killed(tiny_model_dir, tmp_path):
    """A killed ``t2m translate --jobs N`` leaves no worker decoding on: each watches its parent."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "pool.py"
    script.write_text(
        "import sys, time\n"
        "from t2m.decoding.pool import DecodePool\n"
        "if __name__ == '__main__':\n"
        f"    with DecodePool({str(tiny_model_dir)!r}, jobs=2, threads=1) as pool:\n"
        "        print(*pool._pool._processes, flush=True)\n"
        "        time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    def running(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        return "State:\tZ" not in state  # a zombie has exited

    deadline = time.monotonic() + 20
    while any(running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers if running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"workers {left} still running 20 s after their parent was killed"
