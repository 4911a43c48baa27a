"""Reproduction harness: how every number is measured and where it is recorded.

``measure`` (how a figure is taken: complexity, the FPS protocol and presets, speed, a training step,
scan kernels, the machine it ran on), ``jobs`` (what runs and where: a clean process per timing,
torchrun for several GPUs, paper rows with their recipes, what ``mamkpd report --run`` measures, what
this machine can run and why not), ``store`` (the results store and its speed rows), ``findings``
(findings about the paper's baseline figures) and ``gpu_check`` (the GPU check, built from the others).
Submodules are imported where used, so that reading the store never pulls in the models.
"""
