"""Simulation layer: seeded gymnasium/MuJoCo envs, task success, scripted demonstrators, rollouts, evaluation.

Import the submodules you need (`sim.envs`, `sim.rollout`, `sim.evaluation`, ...); this package file stays
free of heavy imports so that `import sim` is cheap. `sim` never imports `robo_offline`.
"""
