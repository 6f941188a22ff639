"""A literal re-run of MolT5's evaluation logic with the reference libraries (nltk, rouge-score,
transformers' BertTokenizerFast, fcd.get_fcd): what t2m's evaluator must equal, and the straightforward
single-process computation that ``tests/benchmarks/bench_eval.py`` times against it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def molt5_text2mol(refs: list[str], outs: list[str], fcd_njobs: int | None = 1) -> dict[str, float]:
    """What MolT5's mol_translation_metrics.py, fingerprint_metrics.py and fcd_metric.py compute."""
    from fcd import canonical_smiles, get_fcd, load_ref_model
    from Levenshtein import distance as lev
    from nltk.translate.bleu_score import corpus_bleu
    from rdkit import Chem, DataStructs, RDLogger
    from rdkit.Chem import AllChem, MACCSkeys

    RDLogger.DisableLog("rdApp.*")
    res = {"bleu": corpus_bleu([[list(g)] for g in refs], [list(o) for o in outs])}
    exact = bad = 0
    for gt, out in zip(refs, outs):
        try:
            if Chem.MolToInchi(Chem.MolFromSmiles(out)) == Chem.MolToInchi(Chem.MolFromSmiles(gt)):
                exact += 1
        except Exception:
            bad += 1
    res.update(
        exact_match=exact / len(refs),
        levenshtein=np.mean([lev(o, g) for g, o in zip(refs, outs)]),
        validity=1 - bad / len(refs),
    )
    maccs, rdk, morgan = [], [], []
    for gt, out in zip(refs, outs):
        g, o = Chem.MolFromSmiles(gt), Chem.MolFromSmiles(out)
        if o is None:
            continue
        maccs.append(
            DataStructs.FingerprintSimilarity(
                MACCSkeys.GenMACCSKeys(g), MACCSkeys.GenMACCSKeys(o), metric=DataStructs.TanimotoSimilarity
            )
        )
        rdk.append(
            DataStructs.FingerprintSimilarity(
                Chem.RDKFingerprint(g), Chem.RDKFingerprint(o), metric=DataStructs.TanimotoSimilarity
            )
        )
        morgan.append(
            DataStructs.TanimotoSimilarity(AllChem.GetMorganFingerprint(g, 2), AllChem.GetMorganFingerprint(o, 2))
        )
    res.update(maccs_fts=np.mean(maccs), rdk_fts=np.mean(rdk), morgan_fts=np.mean(morgan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cg = [w for w in canonical_smiles(refs, njobs=fcd_njobs) if w is not None]
        co = [w for w in canonical_smiles([o if o else "[]" for o in outs], njobs=fcd_njobs) if w is not None]
        res["fcd"] = get_fcd(cg, co, load_ref_model())
    return {k: float(v) for k, v in res.items()}


def molt5_mol2text(refs: list[str], outs: list[str], tokenizer_dir: Path, wordnet=None) -> dict[str, float]:
    """What MolT5's text_translation_metrics.py computes; ``wordnet`` is an nltk WordNet reader (None:
    nltk's default lookup)."""
    from nltk.translate.bleu_score import corpus_bleu
    from nltk.translate.meteor_score import meteor_score
    from rouge_score import rouge_scorer
    from transformers import BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(str(tokenizer_dir))

    def tokens(text):
        return [
            t
            for t in tok.tokenize(text, truncation=True, max_length=512, padding="max_length")
            if t not in ("[PAD]", "[CLS]", "[SEP]")
        ]

    outs_stripped = [o[6:] if o.startswith("[CLS] ") else o for o in outs]
    R, H = [[tokens(r)] for r in refs], [tokens(o) for o in outs_stripped]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    rs = [scorer.score(o, r) for r, o in zip(refs, outs_stripped)]
    meteor_kwargs = {} if wordnet is None else {"wordnet": wordnet}
    return {
        "bleu2": corpus_bleu(R, H, weights=(0.5, 0.5)),
        "bleu4": corpus_bleu(R, H, weights=(0.25, 0.25, 0.25, 0.25)),
        "rouge1": float(np.mean([s["rouge1"].fmeasure for s in rs])),
        "rouge2": float(np.mean([s["rouge2"].fmeasure for s in rs])),
        "rougeL": float(np.mean([s["rougeL"].fmeasure for s in rs])),
        "meteor": float(np.mean([meteor_score(r, h, **meteor_kwargs) for r, h in zip(R, H)])),
    }
