#!/usr/bin/env bash
# One chain of the official RMTL code on our export: pretrain, critics, polish at lambda 1 and 0.7.
#   chain.sh MODEL SEED EPOCHS
# $OFFICIAL_WORK (default /tmp/official) holds the export in export/ (export-official
# --official-roles) and gets one patched copy of the official code per chain; $VENV is a virtual
# environment with this project installed plus gym==0.26.2.
set -uo pipefail
model=$1; seed=$2; epochs=$3
work=${OFFICIAL_WORK:-/tmp/official}; dir=$work/$model-s$seed
# shellcheck disable=SC1091
. "${VENV:-.venv}/bin/activate"
export MPLBACKEND=Agg OMP_NUM_THREADS=1 RMTL_SEED=$seed RMTL_ACTOR=$model RMTL_EPOCHS=$epochs
[ -d "$dir" ] || "$(dirname "$0")"/setup.sh "$dir" "$work/export"
cd "$dir"
[ -f chkpt/SL/rt_$model/rt_${model}_0.0.pt ] || { /usr/bin/time -f "%e s" python SLmain.py --model_name=$model --device cpu > sl.log 2>&1; }
[ -f chkpt/RL/res_TD3BC_$model/critic2.pth ] && [ -f rl.done ] || { /usr/bin/time -f "%e s" python -u RLmain.py > rl.log 2>&1 && touch rl.done; }
for lam in 1 0.7; do
  /usr/bin/time -f "%e s" python SLmain.py --model_name=$model --device cpu --polish=$lam > polish$lam.log 2>&1
done
echo done > chain.done
