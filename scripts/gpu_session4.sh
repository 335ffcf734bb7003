#!/usr/bin/env bash
# Device call 4: train the shipped `default` (recipe H) and `fast` models, cross-validate two fast recipes,
# and measure the CUDA speed table.
source scripts/gpu_env.sh
G="--set run.device=cuda --set data.workers=3"
PAIRS="--set data.teacher=null --set data.unpaired_root=null --set data.teacher_on_pairs=0"
FAST="--set run.max_steps=1500 --set run.batch_size=16 --set run.val_every=100"
( $D train configs/default.yaml $G --set run.dir=/tmp/default > runs/default.log 2>&1; echo "default done $(date +%T)" ) &
( $D cv configs/fast.yaml $G $FAST --set run.checkpoint_every=100000 --folds 3 -o runs/cv-fastD > runs/cv-fastD.log 2>&1; echo "cv fastD done $(date +%T)" ) &
( $D cv configs/fast.yaml $G $FAST $PAIRS --set run.checkpoint_every=100000 --folds 3 -o runs/cv-fastP > runs/cv-fastP.log 2>&1; echo "cv fastP done $(date +%T)" ) &
( $D train configs/fast.yaml $G $FAST --set run.dir=/tmp/fastD > runs/fastD.log 2>&1; echo "fastD done $(date +%T)" ) &
( $D train configs/fast.yaml $G $FAST $PAIRS --set run.dir=/tmp/fastP > runs/fastP.log 2>&1; echo "fastP done $(date +%T)" ) &
wait
for f in runs/cv-fast*.log; do echo "== $f"; grep -E "^fold [0-9]:|mean|error" $f; done
grep -h "error" runs/default.log runs/fastD.log runs/fastP.log
python3 benchmarks/speed.py --device cuda --models /tmp/fastD/last /tmp/default/last "dped (architecture)" ppcn-teacher ppcn-student --fast /tmp/fastD/last 2>&1 | tail -12
python3 benchmarks/speed.py --device cuda --half --models /tmp/fastD/last /tmp/default/last "dped (architecture)" --fast /tmp/fastD/last 2>&1 | tail -8
mkdir -p $OUT/m && for m in default fastD fastP; do tar cf $OUT/m/$m.tar -C /tmp/$m/last config.json model.safetensors; done
tar czf $OUT/cv.tgz runs/cv-fast*/cv.json runs/cv-fast*/fold*/log.csv runs/*.log
