"""How each figure is taken: ``complexity`` (params and GFLOPs, kept on disk by ``count_cache``) and
``readings`` (alternative architecture readings), ``timing`` (the FPS protocol), ``presets``, ``fps`` (a model's speed),
``train_step`` (one training step), ``scan_bench`` (scan kernels against their roofline: bandwidth or
exponential throughput) and ``machine`` (what a measurement ran on: machine, GPU clocks, software versions)."""
