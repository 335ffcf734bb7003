#!/usr/bin/env bash
# Device call 3: cross-validation, round 2 (3 folds each, in parallel on one GPU).
source scripts/gpu_env.sh
G="--set run.device=cuda --set data.workers=2 --set run.checkpoint_every=100000"
DP="--set model.architecture=dped --set model.args={} --set model.init=runs/dped-iphone --set schedule.kind=constant --set schedule.warmup_steps=0"
cv() { local name=$1; shift; $D cv "$@" $G --folds 3 -o runs/cv-$name > runs/cv-$name.log 2>&1; echo "$name done $(date +%T)"; }
cv F configs/default.yaml $DP --set optim.lr=5e-5 --set run.max_steps=600 --set run.val_every=50 &
cv F2 configs/default.yaml $DP --set optim.lr=5e-5 --set run.max_steps=600 --set run.val_every=50 --set data.teacher_on_pairs=0.5 --set data.unpaired_share=0.75 &
cv E2 configs/paper.yaml $DP --set optim.lr=5e-5 --set run.max_steps=400 --set run.val_every=25 --set run.ema=0.98 &
cv H configs/paper.yaml --set model.architecture=ppcn-teacher --set model.args={} --set model.init=runs/ppcn-teacher --set schedule.kind=constant \
   --set schedule.warmup_steps=0 --set optim.lr=1e-4 --set data.teacher=runs/ppcn-teacher --set data.teacher_on_pairs=0.5 --set run.max_steps=400 --set run.val_every=25 &
cv G configs/default.yaml --set model.args.width=32 --set run.max_steps=2000 --set run.val_every=100 --set data.teacher_on_pairs=0.5 --set data.unpaired_share=0.75 &
wait
for f in runs/cv-*.log; do echo "== $f"; grep -E "^fold [0-9]:|mean|error" $f; done
tar czf $OUT/cv.tgz runs/cv-*/cv.json runs/cv-*/fold*/log.csv runs/*.log
