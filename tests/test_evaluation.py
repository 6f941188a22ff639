"""Evaluator: each metric on hand-checked small cases, strict vs MolT5 mode, prediction files, the CLI.

The small cases need no shared data; WordNet-dependent ones need `t2m setup` (the CI runs it first) and
fail with that instruction when it has not been run. Exactness on MolT5's published files:
test_evaluation_exact.py.
"""

from __future__ import annotations

import json
import math
import random
import warnings

import pytest

from evaluation.bleu import char_bleu, corpus_bleu
from evaluation.predictions import PredictionsFormatError, read_predictions
from evaluation.rouge import lcs_length, rouge_f, rouge_scores, rouge_tokenize
from evaluation.text2mol import evaluate_text2mol

from conftest import require_wordnet_or_fail

pytestmark = [
    pytest.mark.filterwarnings("ignore:The hypotheses contain 0 counts"),  # nltk's BLEU warning, kept on purpose
    pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated"),  # inside fcd's own function
]




# ---------------------------------------------------------------- BLEU


def test_char_bleu_hand_checked():
    # ref CCCCC, hyp CCCC: every n-gram of the hypothesis matches; brevity penalty exp(1 - 5/4)
    assert char_bleu(["CCCCC"], ["CCCC"]) == pytest.approx(math.exp(-0.25), abs=1e-15)
    assert char_bleu(["CCCO"], ["CCCO"]) == 1.0
    assert char_bleu(["CCO"], ["N"]) == 0  # no unigram matches


def test_word_bleu_hand_checked():
    ref = "the cat sat on the mat".split()
    hyp = "the cat sat on a mat".split()
    # p1 = 5/6, p2 = 3/5, p3 = 2/4, p4 = 1/3, equal lengths -> BP = 1
    assert corpus_bleu([ref], [hyp], (0.5, 0.5)) == pytest.approx(math.sqrt(5 / 6 * 3 / 5), abs=1e-12)
    assert corpus_bleu([ref], [hyp]) == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-12)


def test_bleu_nltk_quirks_kept():
    # an order with no match anywhere contributes log(float min): the score is ~0, not undefined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert 0 < char_bleu(["CCO"], ["CCO"]) < 1e-70  # 3 characters have no 4-grams
    # an empty hypothesis adds 1 to every denominator, as nltk's max(1, count) does
    assert corpus_bleu([list("CCCC"), list("CCCC")], [list("CCCC"), []], (1.0,)) == pytest.approx(
        4 / 5 * math.exp(1 - 8 / 4)
    )


def test_bleu_bit_identical_to_nltk():
    from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu

    rng = random.Random(0)
    alphabet = "CNOc1()=[]@H+-2"
    refs = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(300)]
    hyps = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(300)]
    assert char_bleu(refs, hyps) == nltk_corpus_bleu([[list(r)] for r in refs], [list(h) for h in hyps])
    words = "the molecule is a an acid base of conjugate with role".split()
    wrefs = [[rng.choice(words) for _ in range(rng.randint(1, 30))] for _ in range(300)]
    whyps = [[rng.choice(words) for _ in range(rng.randint(1, 30))] for _ in range(300)]
    for w in ((0.5, 0.5), (0.25, 0.25, 0.25, 0.25)):
        assert corpus_bleu(wrefs, whyps, w) == nltk_corpus_bleu([[r] for r in wrefs], whyps, weights=w)


# ---------------------------------------------------------------- ROUGE


def test_char_sacrebleu_from_shared_counts_equals_sacrebleu(shared_data):
    """text2mol's sacrebleu score reuses the character n-gram counts of MolT5's BLEU: same number and
    signature as sacrebleu counting itself, on real outputs and with whitespace (the fallback)."""
    from evaluation.bleu import ngram_stats
    from evaluation.metrics import smiles_sacrebleu

    preds = read_predictions(shared_data / "molt5_predictions" / "molt5-small-caption2smiles.txt")
    cases = [(preds.references[:400], preds.outputs[:400]),
             (["CCO", "c1ccccc1"], ["CC O", "c1ccccc1 "]), (["CCO"], [""])]
    for refs, outs in cases:
        fast = smiles_sacrebleu(refs, outs, ngram_stats(refs, outs))
        assert fast == smiles_sacrebleu(refs, outs)


def test_rouge_hand_checked():
    r1, r2, rl = rouge_f("the cat sat", "The cat!")
    assert (r1, r2, rl) == pytest.approx((0.8, 2 / 3, 0.8))
    assert rouge_tokenize("A 3beta-hydroxy STEROID, (E)-isomer") == ["a", "3beta", "hydroxy", "steroid", "e", "isomer"]
    assert rouge_f("", "anything") == (0.0, 0.0, 0.0)


def test_lcs_matches_dynamic_programming():
    def dp(a, b):
        t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                t[i][j] = t[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1][j], t[i][j - 1])
        return t[-1][-1]

    rng = random.Random(1)
    for _ in range(500):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 70))]
        assert lcs_length(a, b) == dp(a, b)


def test_rouge_bit_identical_to_rouge_score(shared_data):
    from rouge_score import rouge_scorer

    preds = read_predictions(shared_data / "molt5_predictions" / "molt5-small-smiles2caption.txt")
    refs, outs = preds.references[:300], preds.outputs[:300]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    import numpy as np

    theirs = [scorer.score(o, r) for r, o in zip(refs, outs)]
    ours = rouge_scores(refs, outs)
    for k in ("rouge1", "rouge2", "rougeL"):
        assert ours[k] == float(np.mean([s[k].fmeasure for s in theirs]))


# ---------------------------------------------------------------- METEOR


def test_meteor_hand_checked_and_identical_to_nltk():
    loc = require_wordnet_or_fail()
    from nltk.translate.meteor_score import meteor_score

    from evaluation.meteor import MeteorScorer
    from evaluation.wordnet import load_wordnet_reader

    scorer = MeteorScorer(loc)
    hyp = "It is a guide to action which ensures that the military always obeys the commands of the party".split()
    ref = "It is a guide to action that ensures that the military will forever heed Party commands".split()
    assert round(scorer.score(ref, hyp), 4) == 0.6944  # nltk's documented example
    assert scorer.score("this is a cat".split(), "non matching hypothesis".split()) == 0.0
    assert scorer.score([], []) == 0.0
    # synonym stage (WordNet), on the stems left after stage two: car ~ auto; "large" stems to "larg",
    # which is no synonym of "big" -- nltk's behaviour, kept
    assert scorer.score(["auto"], ["car"]) == pytest.approx(0.5)  # P = R = 1, one chunk: 1 - 0.5 * 1**3
    assert scorer.score(["large"], ["big"]) == 0.0
    wn = load_wordnet_reader(loc)
    rng = random.Random(2)
    words = (
        "big large car auto acid acidic molecule molecules is an a the role base bases compound derived from".split()
    )
    for _ in range(200):
        r = [rng.choice(words) for _ in range(rng.randint(1, 12))]
        h = [rng.choice(words) for _ in range(rng.randint(0, 12))]
        assert scorer.score(r, h) == meteor_score([r], h, wordnet=wn)


def test_meteor_without_wordnet_stops_with_setup_hint(monkeypatch, tmp_path):
    import evaluation.wordnet as wordnet

    monkeypatch.setenv("T2M_NLTK_DATA", str(tmp_path / "empty"))
    monkeypatch.setattr(wordnet, "nltk_default_paths", lambda: [])
    with pytest.raises(wordnet.WordNetMissingError, match="t2m setup"):
        wordnet.require_wordnet()
    from evaluation.mol2text import evaluate_mol2text

    with pytest.raises(wordnet.WordNetMissingError, match="never computes METEOR without synonyms"):
        evaluate_mol2text(["The molecule is an acid."], ["The molecule is a base."])


# ---------------------------------------------------------------- text tokenizer


def test_text_tokenizer_matches_bert_tokenizer_fast(shared_data):
    from transformers import BertTokenizerFast

    from evaluation.text_tokenizer import TextTokenizer

    scibert = shared_data / "scibert_scivocab_uncased"
    ours = TextTokenizer.load(scibert)
    assert not ours.via_transformers and len(ours.vocab_sha256) == 64
    theirs = BertTokenizerFast.from_pretrained(str(scibert))
    preds = read_predictions(shared_data / "molt5_predictions" / "molt5-base-smiles2caption.txt")
    texts = (
        preds.references[:200]
        + preds.outputs[:200]
        + ["Hello [SEP] world [MASK]x [CLS] [PAD]", "café ÅNGSTRÖM 中文 x\x00y", ""]
    )
    dropped = ("[PAD]", "[CLS]", "[SEP]")
    for t in texts:
        expected = [
            x for x in theirs.tokenize(t, truncation=True, max_length=512, padding="max_length") if x not in dropped
        ]
        assert ours.tokenize(t) == expected, t
    # MolT5 (transformers 4) truncated at 512 tokens; transformers 5 ignores those arguments, we do not
    assert len(ours.tokenize("acid " * 600)) == 512


def test_text_tokenizer_missing_says_how_to_get_it(monkeypatch, tmp_path):
    from evaluation.text_tokenizer import TextTokenizer, TokenizerNotFoundError

    monkeypatch.setenv("T2M_SCIBERT", str(tmp_path / "nowhere"))
    with pytest.raises(TokenizerNotFoundError, match="--text-tokenizer DIR"):
        TextTokenizer.load(None)
    with pytest.raises(TokenizerNotFoundError, match="not a directory"):
        TextTokenizer.load(str(tmp_path / "missing" / "dir"))


# ---------------------------------------------------------------- text2mol


REFS = ["CCO", "CCN", "CCC", "CCCl"]
OUTS = ["OCC", "", "C1CC", "XYZ"]  # same molecule; empty; unclosed ring; not SMILES


def test_text2mol_molt5_mode_hand_checked():
    m = evaluate_text2mol(REFS, OUTS, fcd=False).metrics
    assert m["exact_match"] == 0.25  # OCC is CCO
    assert m["validity"] == 0.5  # the empty output parses (MolT5 quirk); the last two do not
    # similarities over rows whose output parses: OCC/CCO = 1, empty molecule = 0
    assert m["maccs_fts"] == m["rdk_fts"] == m["morgan_fts"] == 0.5
    assert m["levenshtein"] == (2 + 3 + 1 + 4) / 4  # OCC->CCO: 2 edits; ""->CCN: 3; C1CC->CCC: 1; XYZ->CCCl: 4
    assert set(m) == {
        "bleu",
        "exact_match",
        "levenshtein",
        "maccs_fts",
        "rdk_fts",
        "morgan_fts",
        "validity",
        "sacrebleu",
    }


def test_text2mol_strict_mode_fixes_quirks():
    r = evaluate_text2mol(REFS, OUTS, fcd=False, strict=True)
    m = r.metrics
    assert r.signature["mode"] == "strict"
    assert m["validity"] == 0.25  # empty output is invalid
    assert m["maccs_fts"] == m["rdk_fts"] == m["morgan_fts"] == 0.25  # all four rows averaged, invalid = 0
    assert m["exact_match"] == 0.25
    # MolT5 counts two empty InChIs as equal; strict does not
    assert evaluate_text2mol([""], [""], fcd=False, sacrebleu=False).metrics["exact_match"] == 1.0
    assert evaluate_text2mol([""], [""], fcd=False, sacrebleu=False, strict=True).metrics["exact_match"] == 0.0


def test_text2mol_similarity_values_match_rdkit():
    from rdkit import Chem, DataStructs
    from rdkit.Chem import AllChem, MACCSkeys

    ref, out = "c1ccccc1O", "c1ccccc1N"
    g, o = Chem.MolFromSmiles(ref), Chem.MolFromSmiles(out)
    m = evaluate_text2mol([ref], [out], fcd=False, sacrebleu=False).metrics
    assert m["maccs_fts"] == DataStructs.TanimotoSimilarity(MACCSkeys.GenMACCSKeys(g), MACCSkeys.GenMACCSKeys(o))
    assert m["rdk_fts"] == DataStructs.TanimotoSimilarity(Chem.RDKFingerprint(g), Chem.RDKFingerprint(o))
    assert m["morgan_fts"] == DataStructs.TanimotoSimilarity(
        AllChem.GetMorganFingerprint(g, 2), AllChem.GetMorganFingerprint(o, 2)
    )
    assert 0 < m["morgan_fts"] < 1


def test_text2mol_unparsable_reference_is_noted():
    r = evaluate_text2mol(["C1CC", "CCO"], ["CCO", "CCO"], fcd=False, sacrebleu=False)
    assert r.metrics["validity"] == 0.5 and r.metrics["maccs_fts"] == 1.0
    assert any("reference SMILES do not parse" in n for n in r.notes)


def test_fcd_distance_matches_fcd_package():
    import numpy as np
    from fcd.utils import calculate_frechet_distance

    from evaluation.fcd_metric import frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 20)), rng.normal(size=(250, 20)) @ rng.normal(size=(20, 20)) * 0.3 + 0.1
    s1 = (a.mean(0), np.cov(a.T))
    s2 = (b.mean(0), np.cov(b.T))
    expected = calculate_frechet_distance(mu1=s1[0], mu2=s2[0], sigma1=s1[1], sigma2=s2[1])
    assert frechet_distance(s1, s2) == pytest.approx(expected, rel=1e-9)


def test_fcd_small_lists_match_get_fcd(one_torch_thread):
    from fcd import canonical_smiles, get_fcd, load_ref_model

    refs = ["CCO", "c1ccccc1", "CC(=O)O", "CCN(CC)CC", "C1CCCCC1", "O=C=O", "CCCCCCCC", "c1ccncc1"]
    outs = ["OCC", "c1ccccc1C", "CC(=O)N", "", "C1CCCC1", "XYZ", "CCCCCC", "c1ccoc1"]
    m = evaluate_text2mol(refs, outs, sacrebleu=False, use_cache=False).metrics
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gt = [s for s in canonical_smiles(refs, njobs=1) if s is not None]
        ot = [s for s in canonical_smiles([o or "[]" for o in outs], njobs=1) if s is not None]
        expected = get_fcd(gt, ot, load_ref_model())
    assert m["fcd"] == pytest.approx(expected, abs=1e-4)


def test_one_hot_batch_is_fcds_input_tensor():
    """The vectorised one-hot input is bit for bit (values and layout) what fcd's get_one_hot path builds."""
    import numpy as np
    import torch
    from fcd.utils import get_one_hot

    from evaluation.fcd_metric import one_hot_batch, pad_length

    smiles = ["CCO", "c1ccccc1Cl", "[Si]Br.[Na+]", "C[C@@H](N)C(=O)O", "ZZ%10~", "", "C/C=C\\C#N", "O" * 349]
    pad = pad_length(smiles)
    batch = np.stack([get_one_hot(s, pad_len=pad) for s in smiles])
    want = torch.from_numpy(batch / batch.shape[2]).transpose(1, 2).float()
    got = one_hot_batch(smiles, pad)
    assert got.dtype == want.dtype and got.shape == want.shape and got.stride() == want.stride()
    assert torch.equal(got, want)
    with pytest.raises(ValueError):
        one_hot_batch(["C" * 350], 350)


def test_chemnet_rows_do_not_depend_on_their_batch(shared_data, one_torch_thread):
    """What running a repeated SMILES once relies on: a row's ChemNet activation is bit-identical whatever
    else is in its batch (so duplicates can be dropped and the rows re-batched)."""
    import numpy as np

    from evaluation.fcd_metric import activations_in_two_processes, chemnet_activations, pad_length

    preds = read_predictions(shared_data / "molt5_predictions" / "molt5-small-caption2smiles.txt")
    smiles = [s for s in preds.references[:150] if s] * 2  # 2 batches of 128 with repeats
    pad = pad_length(smiles)
    whole = chemnet_activations(smiles, pad)
    assert np.array_equal(whole[:7], chemnet_activations(smiles[:7], pad))
    assert np.array_equal(whole[150:160], chemnet_activations(smiles[150:160], pad))
    assert np.array_equal(activations_in_two_processes(smiles), whole)


# ---------------------------------------------------------------- prediction files


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_read_molt5_tsv_real_rows_keep_backslashes(shared_data):
    preds = read_predictions(shared_data / "molt5_predictions" / "molt5-large-caption2smiles.txt")
    assert preds.task == "text2mol" and len(preds) == 3300
    assert preds.inputs[0].startswith("The molecule is")
    backslashed = [r for r in preds.references if "\\" in r]
    assert backslashed and not any("\\\\" in r for r in backslashed)  # single, unescaped backslashes
    m2t = read_predictions(shared_data / "molt5_predictions" / "molt5-large-smiles2caption.txt")
    assert m2t.task == "mol2text" and m2t.references[0].startswith("The molecule is")


def test_tsv_malformed_row_named_by_file_and_line(tmp_path):
    p = _write(tmp_path / "p.txt", "description\tground truth\toutput\nd1\tCCO\tCCO\nd2\tCCN\nd3\tCCC\t\n\nd4\t\tC\n")
    with pytest.raises(PredictionsFormatError) as e:
        read_predictions(p)
    assert f"{p}:3: 2 tab-separated fields, expected 3" in str(e.value)
    assert f"{p}:6: empty 'ground truth'" in str(e.value)
    preds = read_predictions(p, skip_bad_rows=True)
    assert preds.references == ["CCO", "CCC"] and preds.outputs == ["CCO", ""]  # empty output kept
    assert preds.line_numbers == [2, 4] and len(preds.skipped) == 2


def test_tsv_bad_header(tmp_path):
    p = _write(tmp_path / "p.txt", "a\tb\tc\nx\ty\tz\n")
    with pytest.raises(PredictionsFormatError, match=r"p.txt:1: header"):
        read_predictions(p)


def test_jsonl_predictions(tmp_path):
    p = _write(
        tmp_path / "p.jsonl",
        '{"input": "The molecule is ethanol.", "reference": "CCO", "output": "OCC", "task": "text2mol"}\n'
        '{"input": "x", "ground_truth": "CCN", "prediction": ""}\n\n'
        '{"reference": "CCC", "output": null}\n'
        "not json\n",
    )
    with pytest.raises(PredictionsFormatError) as e:
        read_predictions(p)
    assert f"{p}:4:" in str(e.value) and f"{p}:5: invalid JSON" in str(e.value)
    preds = read_predictions(p, skip_bad_rows=True)
    assert preds.task == "text2mol" and preds.references == ["CCO", "CCN"] and preds.outputs == ["OCC", ""]


# ---------------------------------------------------------------- CLI


def _slice(src, dst, rows):
    with open(src, encoding="utf-8") as f:
        dst.write_text("".join(next(f) for _ in range(rows + 1)), encoding="utf-8")
    return dst


def test_cli_text2mol_end_to_end(shared_data, tmp_path, capsys):
    from t2m.cli import main

    p = _slice(shared_data / "molt5_predictions" / "molt5-small-caption2smiles.txt", tmp_path / "c2s.txt", 40)
    out = tmp_path / "scores.json"
    assert main(["eval", str(p), "--json", str(out), "--no-cache"]) == 0  # task from the header
    printed = capsys.readouterr().out
    assert "exact_match" in printed and "signature: task:text2mol|mode:molt5|rdkit:" in printed
    data = json.loads(out.read_text())
    assert data["n"] == 40 and data["task"] == "text2mol"
    assert list(data["metrics"]) == [
        "bleu",
        "exact_match",
        "levenshtein",
        "maccs_fts",
        "rdk_fts",
        "morgan_fts",
        "validity",
        "fcd",
        "sacrebleu",
    ]
    assert {"rdkit", "nltk", "fcd", "rouge-score", "Levenshtein", "mode"} <= set(data["signature"])
    assert data["signature"]["sacrebleu"].startswith("nrefs:1|case:mixed|eff:no|tok:char")
    assert data["metrics"]["fcd"] > 0

    strict = tmp_path / "strict.json"
    assert main(["eval", str(p), "--task", "text2mol", "--strict", "--no-fcd", "--json", str(strict)]) == 0
    s = json.loads(strict.read_text())
    assert s["signature"]["mode"] == "strict" and "fcd" not in s["metrics"]
    assert s["metrics"]["validity"] <= data["metrics"]["validity"]
    assert s["metrics"]["maccs_fts"] <= data["metrics"]["maccs_fts"]


def test_cli_mol2text_end_to_end(shared_data, tmp_path, capsys):
    require_wordnet_or_fail()
    from t2m.cli import main

    p = _slice(shared_data / "molt5_predictions" / "molt5-small-smiles2caption.txt", tmp_path / "s2c.txt", 30)
    out = tmp_path / "scores.json"
    tok = shared_data / "scibert_scivocab_uncased"
    assert main(["eval", str(p), "--text-tokenizer", str(tok), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["n"] == 30 and data["task"] == "mol2text"
    assert list(data["metrics"]) == ["bleu2", "bleu4", "rouge1", "rouge2", "rougeL", "meteor", "sacrebleu"]
    assert (
        data["signature"]["vocab_sha256"] == __import__("hashlib").sha256((tok / "vocab.txt").read_bytes()).hexdigest()
    )
    assert data["signature"]["wordnet"] == "3.0"
    assert all(0 < v < 1 for k, v in data["metrics"].items() if k != "sacrebleu")
    assert "vocab_sha256:" in capsys.readouterr().out


def test_cli_reports_bad_rows_and_exit_code(tmp_path, capsys):
    from t2m.cli import main

    p = _write(tmp_path / "bad.txt", "description\tground truth\toutput\nd\tCCO\tCCO\tEXTRA\n")
    assert main(["eval", str(p), "--no-fcd"]) == 2
    assert f"{p}:2: 4 tab-separated fields" in capsys.readouterr().err
    q = _write(tmp_path / "unknown.jsonl", '{"reference": "CCO", "output": "CCO"}\n')
    assert main(["eval", str(q), "--no-fcd"]) == 2
    assert "pass --task" in capsys.readouterr().err
