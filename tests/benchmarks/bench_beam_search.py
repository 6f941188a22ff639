"""Beam search of t2m.beam_search against transformers own (no cache tricks): wall time and equal beams.

    OMP_NUM_THREADS=1 python tests/benchmarks/bench_beam_search.py   # 32 test rows, beam 5, both tasks
"""
import time, torch, contextlib
torch.set_num_threads(1)
import t2m.generate as g
from t2m.data import load_chebi20_records
recs = load_chebi20_records(None).test[:32]
tr = g.Translator.from_pretrained()
for task,key in (('text2mol','description'),('mol2text','smiles')):
    xs=[r[key] for r in recs]
    t=time.time(); a=tr.translate(xs,task,num_beams=5,batch_size=32,max_new_tokens=128); ta=time.time()-t
    fast = g.fast_beam_search
    g.fast_beam_search = lambda m, b: contextlib.nullcontext({})  # transformers' own beam search
    t=time.time(); b=tr.translate(xs,task,num_beams=5,batch_size=32,max_new_tokens=128); tb=time.time()-t
    g.fast_beam_search = fast
    print(task, 'new', round(ta,2), 'transformers', round(tb,2), 'same candidates', sum(x.candidates==y.candidates for x,y in zip(a,b)), '/32', flush=True)
