"""Reproduction harness: how every number is measured and where it is recorded.

``complexity`` (params and GFLOPs), ``timing`` (the FPS protocol), ``presets``, ``fps`` (a model's speed),
``fps_isolated`` and ``launch``/``worker`` (a clean process per timing, torchrun for several GPUs),
``fps_records`` and ``results`` (the results store), ``availability`` (what this machine can run, and
why not), ``reproduce`` (paper rows with their recipes), ``baseline_findings`` and ``run_plan`` (what
``mamkpd report --run`` measures). Submodules are imported where used, so that reading the store never
pulls in the models.
"""
