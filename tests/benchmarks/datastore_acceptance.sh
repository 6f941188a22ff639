#!/bin/bash
# Issue 4 measurements for one task on the shipped model: bash tests/benchmarks/datastore_acceptance.sh TASK
# (run t2m bench --out bench_out/b500 ... first: it reuses that bench's tuned store, keys and k, lambda, T)
set -e
T=$1
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
W=bench_out/ds_work_$T
mkdir -p $W
[ -e $W/train ] || ln -s ../b500/stores/$T $W/train
python tests/benchmarks/bench_datastore.py --data ../shared/data/chebi20 --model t2m/default_model --task $T \
  --max-len 512 --build-rows 400 --queries 1600 --factories "IVF1024,Flat|nprobe=8;IVF2048,SQfp16|nprobe=10" \
  --decode-indexes "IVF2048,SQfp16|nprobe=10" --decode-rows 64 --decode-tokens 48 --faiss-threads 1 --repeats 3 \
  --metric-rows 200 --metric-beams 5 --knn-params-from bench_out/b500/stores/$T --work $W \
  --json bench_out/datastore_$T.json
