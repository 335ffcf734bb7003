#!/usr/bin/env bash
# Device call 2: cross-validate candidate recipes for `default` (3 folds each, in parallel on one GPU).
source scripts/gpu_env.sh
G="--set run.device=cuda --set data.workers=2 --set run.checkpoint_every=100000"
cv() { local name=$1; shift; $D cv "$@" $G --folds 3 -o runs/cv-$name > runs/cv-$name.log 2>&1; echo "$name done $(date +%T)"; }
cv A configs/paper.yaml --set run.max_steps=800 --set run.batch_size=32 --set run.val_every=100 &
cv B configs/paper.yaml --set run.max_steps=800 --set run.batch_size=32 --set run.val_every=100 --set data.jitter=0.1 --set run.ema=0.995 &
cv C configs/default.yaml --set run.max_steps=1200 --set run.val_every=100 &
cv D configs/default.yaml --set run.max_steps=1200 --set run.val_every=100 --set data.teacher_on_pairs=0.5 --set data.unpaired_share=0.75 &
cv E configs/paper.yaml --set model.architecture=dped --set model.args={} --set model.init=runs/dped-iphone --set optim.lr=5e-5 \
   --set schedule.kind=constant --set schedule.warmup_steps=0 --set run.max_steps=300 --set run.val_every=25 --set run.batch_size=16 &
( $D train configs/paper.yaml $G --set data.synthetic_root=../shared/data/photos --set run.max_steps=1000 --set run.val_every=250 \
    --set run.batch_size=32 --set run.dir=runs/synth > runs/synth.log 2>&1 && echo "synth pretrain done $(date +%T)" &&
  cv S configs/paper.yaml --set model.init=runs/synth/last --set run.max_steps=800 --set run.batch_size=32 --set run.val_every=100 ) &
wait
grep -h "PSNR" runs/synth.log | tail -3
for f in runs/cv-*.log; do echo "== $f"; grep -E "^fold|mean|error" $f; done
tar czf $OUT/cv.tgz runs/cv-*/cv.json runs/cv-*/fold*/log.csv runs/*.log
