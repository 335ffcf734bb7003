#!/usr/bin/env bash
# Device call 5: the chosen recipe (H) cross-validated with two more seeds (seed changes the folds too).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p ../shared && ln -sfn "$PWD/.gpudata" ../shared/data
D="python3 -m dslrify.cli"
$D import-ppcn ../shared/data/ppcn-checkpoints/teacher.ckpt -o runs/ppcn-teacher
$D import-dped ../shared/data/dped-checkpoints/iphone_orig -o runs/dped-iphone
H="--set model.architecture=ppcn-teacher --set model.args={} --set model.init=runs/ppcn-teacher --set schedule.kind=constant --set schedule.warmup_steps=0 --set optim.lr=1e-4 --set data.teacher=runs/ppcn-teacher --set data.teacher_on_pairs=0.5 --set run.max_steps=400 --set run.val_every=25 --set run.device=cuda --set data.workers=2 --set run.checkpoint_every=100000"
for seed in 1 2; do ( $D cv configs/paper.yaml $H --set run.seed=$seed --folds 3 -o runs/cv-H-seed$seed > runs/cv-H-seed$seed.log 2>&1; echo "seed $seed done" ) & done
wait
for f in runs/cv-H-seed*.log; do echo "== $f"; grep -E "^fold [0-9]:|mean|error" $f; done
tar czf $OUT/cv.tgz runs/cv-H-seed*/cv.json runs/cv-H-seed*/fold*/log.csv
