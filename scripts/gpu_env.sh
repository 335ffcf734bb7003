# Sourced by the gpu_session*.sh scripts: set up a bare lent GPU machine for dslrify.
# The wheels in .whl/ (kornia, kornia_rs, pytorch-msssim for Python 3.12) and a copy of ../shared/data in
# .gpudata/ travel with the working tree (`carry`); the machine's own torch is used.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p ../shared && ln -sfn "$PWD/.gpudata" ../shared/data
D="python3 -m dslrify.cli"
$D import-ppcn ../shared/data/ppcn-checkpoints/teacher.ckpt -o runs/ppcn-teacher
$D import-dped ../shared/data/dped-checkpoints/iphone_orig -o runs/dped-iphone
