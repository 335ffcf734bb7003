#!/usr/bin/env bash
# Device call 5: the chosen recipe (H) cross-validated with two more seeds (seed changes the folds too).
source scripts/gpu_env.sh
H="--set model.architecture=ppcn-teacher --set model.args={} --set model.init=runs/ppcn-teacher --set schedule.kind=constant --set schedule.warmup_steps=0 --set optim.lr=1e-4 --set data.teacher=runs/ppcn-teacher --set data.teacher_on_pairs=0.5 --set run.max_steps=400 --set run.val_every=25 --set run.device=cuda --set data.workers=2 --set run.checkpoint_every=100000"
for seed in 1 2; do ( $D cv configs/paper.yaml $H --set run.seed=$seed --folds 3 -o runs/cv-H-seed$seed > runs/cv-H-seed$seed.log 2>&1; echo "seed $seed done" ) & done
wait
for f in runs/cv-H-seed*.log; do echo "== $f"; grep -E "^fold [0-9]:|mean|error" $f; done
tar czf $OUT/cv.tgz runs/cv-H-seed*/cv.json runs/cv-H-seed*/fold*/log.csv
