"""What runs, and where: ``launch``/``worker`` (a job in a process of its own, torchrun for several GPUs),
``fps_isolated`` (each model timed in a fresh process), ``reproduce`` (paper rows with their recipes),
``run_plan`` (what ``mamkpd report --run`` measures) and ``availability`` (what this machine can run,
and why not)."""
