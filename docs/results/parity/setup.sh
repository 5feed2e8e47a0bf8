#!/usr/bin/env bash
# A patched working copy of the official RMTL code (a fetched snapshot at $RMTL_OFFICIAL_GIT,
# commit 5b8b13c) with our export's dataset/ and pretrain/ in it: setup.sh DIR EXPORT
set -euo pipefail
dir=$1; export_dir=$2
rm -rf "$dir"; mkdir -p "$dir"
repo=${RMTL_OFFICIAL_GIT:-/work/.mirror/Applied-Machine-Learning-Lab+RMTL/repo}
# pretrain.zip's blob is absent from the snapshot (and its catemap/memory are replaced anyway)
git --git-dir="$repo" archive HEAD $(git --git-dir="$repo" ls-tree -r --name-only HEAD | grep '\.py$' | grep -v __pycache__) | tar -x -C "$dir"
cp -r "$export_dir"/dataset "$export_dir"/pretrain "$dir"/
cd "$dir"
python - <<'PY'
import re
from pathlib import Path
def patch(path, old, new, count=1):
    p = Path(path); s = p.read_text()
    assert s.count(old) >= 1, (path, old)
    s = s.replace(old, new) if count == 0 else s.replace(old, new, count)
    p.write_text(s)
# 1. CPU and current libraries (gym 0.26.2, the last gym, is installed for its API; numpy 2 needs
#    np.long/np.int replaced)
patch("train/utils.py", "torch.cuda.current_device()\n", "")
patch("train/utils.py", "astype(np.int)", "astype(np.int64)")
for f in ("layers/layers.py", "slmodels/layers.py"):
    patch(f, "np.long", "np.int64", 0)
patch("train/run.py", "from IPython.display import clear_output\n", "clear_output = lambda *a, **k: None\n")
patch("train/run.py", "    plt.show()\n", "    plt.close('all')\n")
# 2. seeds from RMTL_SEED (official: 2022 hard-coded)
for f in ("SLmain.py", "train/run.py"):
    patch(f, "seed = 2022", "seed = int(__import__('os').environ.get('RMTL_SEED', 2022))", 0)
# 3. single-process data loading (no shuffle, so identical batches; 4 workers on 2 cores only add startup)
patch("SLmain.py", "num_workers=4", "num_workers=0", 0)
# 4. RLmain: the actor named by RMTL_ACTOR (official: 'ple' hard-coded), the whole training split
#    (official: train_rows = 500, i.e. the first 500 rows), episodes from RMTL_EPISODES
patch("RLmain.py", "hyparams.train_rows = 500", "hyparams.train_rows = None")
patch("RLmain.py", "'ple', TD3_ESMMBCAgent", "__import__('os').environ.get('RMTL_ACTOR', 'ple'), TD3_ESMMBCAgent")
patch("RLmain.py", "hyparams.init_episode = 200000", "hyparams.init_episode = int(__import__('os').environ.get('RMTL_EPISODES', 200000))")
patch("RLmain.py", "hyparams.epoch = 96", "hyparams.epoch = int(__import__('os').environ.get('RMTL_EPOCHS', 96))")
# 5. env.py: our numerical feature instead of a zero column (export.json's patch), states as float
patch("env.py", "usecols=['timestamp', 'visitorid', 'itemid', 'click', 'pay',\n                                                  'state', 'next_state']",
      "usecols=['timestamp', 'visitorid', 'itemid', 'click', 'pay',\n                                                  'state', 'next_state', 'log_position']")
patch("env.py", "states = np.c_[cate_fea,np.zeros((cate_fea.shape[0],1))]", "states = np.c_[cate_fea, d['log_position'].values]")
patch("env.py", "states=states.astype(np.int64)", "states=states.astype(np.float64)")
# 6. the polish loads the same device the model is on
patch("SLmain.py", "torch.load(f'{save_dir}/{dataset_name}_{model_name}_0.0.pt')", "torch.load(f'{save_dir}/{dataset_name}_{model_name}_0.0.pt', map_location='cpu')")
patch("SLmain.py", "model.load_state_dict(torch.load(save_path))", "model.load_state_dict(torch.load(save_path, map_location='cpu'))")
PY
