#!/bin/bash
# Issue 30, item 8: the datastore on one GPU, in under 10 minutes, printing what ran where.
#
#   bash tests/benchmarks/gpu_check.sh [--cpu-smoke] [--data DIR] [--wheels DIR] [--work DIR]
#
# From the repository root of a fresh GPU machine after `pip install torch==2.13.0 -e .`:
#   1. faiss with GPU support: when the installed faiss sees no GPU but torch does, faiss-cpu is replaced by
#      faiss-gpu (CUDA 12 wheels, from the package registry, or from --wheels DIR without network); when pip
#      cannot, it says so and the index steps run on the CPU (the summary then says NOT A GPU RUN);
#   2. a 1M-entry store from arrays (datastore.write_datastore, synthetic d-256 keys) with an IVF4096,PQ64
#      index (float16 lookup tables on the GPU, re-ranked from the keys) and an IVF4096,Flat index: built,
#      loaded as `t2m translate` loads a store, searched (recall@16 against exact search, 320 queries);
#   3. `t2m datastore build` of a small mol2text store from the shipped model (t2m/default_model, 10% of
#      ChEBI-20's train split) and `t2m translate --knn` of 100 ChEBI-20 test rows with it;
#   4. what ran where, read back from datastore.json and from the loaded indexes and model.
# ChEBI-20 is looked for in --data, $T2M_SHARED_DATA/chebi20, ./shared/data/chebi20, ../shared/data/chebi20.
# --cpu-smoke: the same steps at small sizes on a CPU (20k entries of 128 clusters, 2% of the pairs, 10 rows,
# 32 tokens).
# Exit status: 0 when every step ran (and, without --cpu-smoke, the indexes ran on the GPU); 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
SMOKE=0; DATA=""; WHEELS=""; WORK=/tmp/t2m-gpu-check
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-smoke) SMOKE=1 ;;
        --data) DATA="$2"; shift ;;
        --wheels) WHEELS="$2"; shift ;;
        --work) WORK="$2"; shift ;;
        *) echo "gpu_check.sh: unknown option $1 (--cpu-smoke, --data DIR, --wheels DIR, --work DIR)"; exit 2 ;;
    esac
    shift
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ $SMOKE = 1 ]; then
    ENTRIES=20000; CLUSTERS=128; FRACTION=0.02; ROWS=10; TOKENS=32; GPU=auto
else
    ENTRIES=1000000; CLUSTERS=2048; FRACTION=0.1; ROWS=100; TOKENS=256; GPU=auto
fi
mkdir -p "$WORK"
FAILED=()
step() { echo; echo "== $1 (at ${SECONDS} s)"; }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
python - <<'EOF'
import platform, torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s))" if torch.cuda.is_available() else ""))
try:
    import faiss
    print(f"faiss {faiss.__version__}: GPUs it sees: {faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 'no GPU support'}")
except ImportError:
    print("faiss: not installed")
EOF

step "faiss GPU support"
FAISS_GPUS=$(python -c "import faiss; print(faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0)" 2>/dev/null || echo 0)
TORCH_GPUS=$(python -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ $SMOKE = 1 ]; then
    echo "--cpu-smoke: the installed faiss as it is (GPUs: $FAISS_GPUS)"
elif [ "$FAISS_GPUS" != 0 ]; then
    echo "faiss sees $FAISS_GPUS GPU(s)"
elif [ "$TORCH_GPUS" = 0 ]; then
    echo "no CUDA GPU (torch sees none): the index steps run on the CPU"
else
    echo "torch sees $TORCH_GPUS GPU(s), the installed faiss none: replacing faiss-cpu by faiss-gpu (CUDA 12)"
    FIND=(); [ -n "$WHEELS" ] && FIND=(--no-index --find-links "$WHEELS")
    PKG=""
    for candidate in "faiss-gpu>=1.8" "faiss-gpu-cu12"; do  # download first: faiss-cpu stays until one is at hand
        if python -m pip download -q --only-binary=:all: -d "$WORK/wheels" "${FIND[@]}" "$candidate"; then
            PKG=$candidate; break
        fi
    done
    if [ -z "$PKG" ]; then
        echo "pip could not fetch faiss-gpu or faiss-gpu-cu12 (no registry access? pass --wheels DIR holding the wheels"
        echo "and their nvidia-*-cu12 dependencies): the index steps run on the CPU"
    elif python -m pip uninstall -y -q faiss-cpu && \
         python -m pip install -q --no-index --find-links "$WORK/wheels" "$PKG"; then
        echo "installed $PKG: faiss sees $(python -c 'import faiss; print(faiss.get_num_gpus())') GPU(s)"
    else
        echo "installing $PKG failed: putting faiss-cpu back; the index steps run on the CPU"
        python -m pip install -q faiss-cpu
    fi
fi

step "1. a store of $ENTRIES entries from arrays: IVF-PQ64 and IVF-Flat, built, loaded, searched"
python tests/benchmarks/gpu_check.py index --entries $ENTRIES --clusters $CLUSTERS --gpu $GPU --work "$WORK" \
    --json "$WORK/index.json" || FAILED+=("index")

step "2. t2m datastore build (shipped model, ${FRACTION} of ChEBI-20 train) and t2m translate --knn ($ROWS rows)"
if [ -z "$DATA" ]; then
    for candidate in ${T2M_SHARED_DATA:+"$T2M_SHARED_DATA/chebi20"} shared/data/chebi20 ../shared/data/chebi20; do
        [ -f "$candidate/test.txt" ] && DATA=$candidate && break
    done
fi
if [ -z "$DATA" ] || [ ! -f "$DATA/test.txt" ]; then
    echo "ChEBI-20 not found (--data DIR, \$T2M_SHARED_DATA/chebi20, shared/data/chebi20, ../shared/data/chebi20):"
    echo "the build and translate steps did not run"
    FAILED+=("chebi20 missing")
else
    STORE="$WORK/mol2text_store"
    start=$SECONDS
    if python -m t2m datastore build --model t2m/default_model --task mol2text --data "$DATA" \
            --fraction $FRACTION --out "$STORE" --gpu $GPU --overwrite --no-resume; then
        echo "datastore build: $((SECONDS - start)) s"
        head -n $((ROWS + 1)) "$DATA/test.txt" > "$WORK/rows.tsv"
        start=$SECONDS
        if python -m t2m translate --task mol2text --knn "$STORE" --knn-pairs 0 --input "$WORK/rows.tsv" \
                --max-new-tokens $TOKENS --output "$WORK/translations.txt" --overwrite --no-resume; then
            echo "translate: $ROWS rows in $((SECONDS - start)) s; first output: $(sed -n 2p "$WORK/translations.txt" | awk -F'\t' '{print $NF}' | cut -c1-150)"
            [ "$(wc -l < "$WORK/translations.txt")" -ge "$ROWS" ] || FAILED+=("translate wrote too few rows")
        else
            FAILED+=("translate")
        fi
        step "3. what ran where (t2m datastore build / translate --knn)"
        python tests/benchmarks/gpu_check.py where --store "$STORE" || FAILED+=("where")
    else
        FAILED+=("datastore build")
    fi
fi

step "summary"
if [ $SMOKE = 0 ] && [ -f "$WORK/index.json" ]; then
    python - "$WORK/index.json" <<'EOF' || FAILED+=("not on the GPU")
import json, sys
results = json.load(open(sys.argv[1]))
for r in results:
    print(f"{r['factory']}: built on GPU {r['built_on_gpu']}, searched on GPU {r['searched_on_gpu']}, "
          f"{r['ms_per_step_160']} ms per 160 queries, recall@16 {r['recall_at_16']}")
if not all(r["built_on_gpu"] and r["searched_on_gpu"] for r in results):
    print("NOT A GPU RUN: some index was built or searched on the CPU (the fallbacks above say why)")
    sys.exit(1)
EOF
fi
echo "total: ${SECONDS} s (target: under 600 s on one GPU)"
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "FAILED: ${FAILED[*]}"
    exit 1
fi
echo "OK"
