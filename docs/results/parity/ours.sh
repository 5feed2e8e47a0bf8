#!/usr/bin/env bash
# Our side of the parity study on the small RetailRocket twin (the data of the export).
#   ours.sh MODEL SEED        (from the repository root, its virtual environment active)
set -uo pipefail
model=$1; seed=$2; root=runs/parity/$model-s$seed
mkdir -p runs/parity
export OMP_NUM_THREADS=1
common="--backbone $model --seed $seed --no-progress"
# official preset, lambda 1 (the official README polish); 22 critic epochs x 30 steps = the 672
# critic steps the official run got (4 of its 96 epochs x 168 steps)
python train/rmtl_ddpg.py $common --preset official --critic-epochs 22 --lam 1 --run-dir $root/official-lam1 > $root.official-lam1.log 2>&1
ck=$root/official-lam1/checkpoints
# official preset, lambda 0.7, same backbone and critics
python train/rmtl_ddpg.py $common --preset official --critic-epochs 22 --lam 0.7 --backbone-checkpoint $ck/backbone.pt --critics-from $ck/critics.pt --run-dir $root/official-lam0.7 > $root.official-lam0.7.log 2>&1
# control: the polish keeps the rows in file order, as the official loader
python train/rmtl_ddpg.py $common --preset official --critic-epochs 22 --lam 1 --no-shuffle --backbone-checkpoint $ck/backbone.pt --critics-from $ck/critics.pt --run-dir $root/official-lam1-noshuffle > $root.official-lam1-noshuffle.log 2>&1
echo done > $root.done
# control: pretraining and polish both keep the rows in file order (a new backbone)
python train/rmtl_ddpg.py $common --preset official --critic-epochs 22 --lam 1 --no-shuffle --run-dir $root/official-lam1-noshuffle-all > $root.official-lam1-noshuffle-all.log 2>&1
echo done > $root.controls.done
