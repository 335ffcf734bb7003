#!/usr/bin/env bash
# Retrain the shipped models (default, balanced, fast, paper) from ../shared/data with the dslrify CLI alone.
#
#   scripts/retrain.sh [--device auto|cpu|cuda] [--runs DIR] [--out DIR] MODEL...   (MODEL: default balanced fast paper all)
#
# Each model is trained into RUNS/MODEL (a normal `dslrify train` run folder) and its checkpoint
# (model.safetensors + config.json: `best` when the recipe validates, else `last`) is copied to OUT/MODEL.
# The shipped weights in src/dslrify/weights are never written here: `make ship-weights` does that, on request.
# Environment: DSLRIFY (the command, default `dslrify`), DATA (default ../shared/data).
# Recipes are the model cards' (docs/models/*.md). default and fast have two stages: the network
# (configs/NAME-base.yaml), then the quality gate around it (configs/NAME.yaml), which also trains on clean
# photos: CLEAN (default RUNS/mate-backgrounds; fetched with apt-get download mate-backgrounds when
# absent). balanced has three: fast's network (configs/fast-base.yaml), a detail path distilled on
# phone photos 10-99 of DATA/phone-photos (configs/balanced-detail.yaml), the gate (configs/balanced.yaml).
# Times on a 2-core CPU: default ~10 min, balanced ~12 min, fast ~15 min, paper ~2 h (one H100: minutes).
set -euo pipefail
cd "$(dirname "$0")/.."  # relative paths (configs/, --runs, --out, DATA) start at the repository root

DSLRIFY=${DSLRIFY:-dslrify}
DATA=${DATA:-../shared/data}
device=auto
runs=runs/retrain
out=retrained
models=()
while [ $# -gt 0 ]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        all) models+=(default balanced fast paper); shift ;;
        default | balanced | fast | paper) models+=("$1"); shift ;;
        -h | --help) sed -n '2,13p' "$0" | cut -c3-; exit 0 ;;
        *) echo "error: unknown argument '$1' (models: default balanced fast paper all)" >&2; exit 2 ;;
    esac
done
if [ ${#models[@]} -eq 0 ]; then
    echo "error: name the models to retrain: default balanced fast paper (or all)" >&2
    exit 2
fi
if [ ! -d "$DATA/dped" ]; then
    echo "error: $DATA/dped not found; set DATA=/path/to/data (a folder holding dped/ and ppcn-checkpoints/)" >&2
    exit 2
fi
case $(realpath -m "$out") in
    "$(realpath -m src/dslrify/weights)"*)
        echo "error: --out must not be the shipped weights folder; retrain elsewhere, then make ship-weights" >&2
        exit 2 ;;
esac

teacher=$runs/ppcn-teacher
clean=${CLEAN:-$runs/mate-backgrounds}
common=(--set "data.root=$DATA/dped" --set "run.device=$device")
# default, balanced and fast start from PPCN's released teacher and use it to blend the targets.
with_teacher=(--set "model.init=$teacher" --set "data.teacher=$teacher")

for model in "${models[@]}"; do
    if [ "$model" != paper ] && [ ! -f "$teacher/config.json" ]; then
        "$DSLRIFY" import-ppcn "$DATA/ppcn-checkpoints/teacher.ckpt" -o "$teacher"
    fi
    run=$runs/$model
    if [ -e "$run" ]; then
        echo "error: $run exists; remove it or choose another --runs folder" >&2
        exit 2
    fi
    start=$(date +%s)
    case $model in
        default | balanced | fast)
            if [ -z "$(ls "$clean" 2>/dev/null)" ]; then  # clean photos for the gate's identity patches
                mkdir -p "$clean" "$runs/mate"
                (cd "$runs/mate" && apt-get download mate-backgrounds >/dev/null && dpkg -x mate-backgrounds_*.deb .) || {
                    echo "error: no clean photos in $clean and apt-get download mate-backgrounds failed;" \
                        "set CLEAN=/folder/of/clean/photos" >&2
                    exit 2
                }
                cp "$runs"/mate/usr/share/backgrounds/mate/nature/*.jpg "$clean/"
            fi
            network=$run-base
            if [ "$model" = balanced ]; then  # fast's network, then the detail path distilled on phone photos
                phones=$runs/phone-photos-10-99
                if [ ! -f "$DATA/phone-photos/99.jpg" ]; then
                    echo "error: $DATA/phone-photos/10.jpg ... 99.jpg not found (the detail path's distillation photos)" >&2
                    exit 2
                fi
                mkdir -p "$phones"
                for i in $(seq 10 99); do ln -sf "$(realpath "$DATA/phone-photos/$i.jpg")" "$phones/"; done
                "$DSLRIFY" train configs/fast-base.yaml "${common[@]}" "${with_teacher[@]}" --set "run.dir=$run-base"
                "$DSLRIFY" train configs/balanced-detail.yaml "${common[@]}" --set "model.init=$run-base/last" \
                    --set "data.teacher=$teacher" --set "data.unpaired_root=$phones" --set "run.dir=$run-detail"
                network=$run-detail
            else
                "$DSLRIFY" train "configs/$model-base.yaml" "${common[@]}" "${with_teacher[@]}" --set "run.dir=$run-base"
            fi
            "$DSLRIFY" train "configs/$model.yaml" "${common[@]}" --set "model.init=$network/last" \
                --set "data.clean_root=$clean" --set "run.dir=$run" ;;
        paper)
            # The shipped weights: the `best` step (400) of a 4000-step cosine schedule, batch 32.
            "$DSLRIFY" train configs/paper.yaml "${common[@]}" --set run.max_steps=4000 \
                --set run.batch_size=32 --set run.val_every=200 --set "run.dir=$run" ;;
    esac
    src=$run/best
    [ -d "$src" ] || src=$run/last
    mkdir -p "$out/$model"
    cp "$src/config.json" "$src/model.safetensors" "$out/$model/"
    echo "$model: trained in $(($(date +%s) - start)) s; model copied from $src to $out/$model"
done
