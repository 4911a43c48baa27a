"""Where figures are recorded: ``results`` (the results store) and ``fps_records`` (the store rows of a
speed measurement)."""
