#!/usr/bin/env bash
# One device call: default-model training on CUDA, AMP/compile smoke run, throughput, CUDA checks.
set -x
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
mkdir -p ../shared && ln -sfn "$PWD/.gpudata" ../shared/data
nvidia-smi -L; python3 -c "import torch, kornia; print(torch.__version__, kornia.__version__)"
D="python3 -m dslrify.cli"
$D train configs/paper.yaml --set run.device=cuda --set run.max_steps=4000 --set run.batch_size=32 \
  --set run.val_every=200 --set run.checkpoint_every=1000 --set data.workers=4 --set run.dir=/tmp/paper 2>&1 | grep -v "━" | tail -30
mkdir -p $OUT/default && cp /tmp/paper/best/config.json /tmp/paper/best/model.safetensors $OUT/default/ && cp /tmp/paper/log.csv $OUT/paper_log.csv
$D train configs/paper.yaml --set run.device=cuda --set run.max_steps=300 --set run.amp=true --set run.compile=true \
  --set run.val_every=100 --set data.workers=4 --set run.dir=/tmp/amp 2>&1 | grep -v "━" | tail -6
python3 benchmarks/train_throughput.py --device cuda --steps 30 2>&1 | tail -5
python3 benchmarks/train_throughput.py --device cuda --steps 30 --amp 2>&1 | tail -5
python3 scripts/check_cuda.py --model /tmp/paper/best 2>&1 | tail -5
