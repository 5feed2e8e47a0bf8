"""The support code of the scripts in ``train/``: their flags, generated from the config
dataclasses (``cli``), a job run into a run folder (``jobs``, ``run_folder``), result tables and
plots (``tables``, ``plots``), and the benchmark runner's cells, studies and blocks (``cells``,
``studies``, ``blocks``, ``rl_block``, ``offline_d3rlpy``). The scripts stay thin drivers over it
and over ``agents.pipeline``; ``python train/rmtl_ddpg.py`` is the main command."""
