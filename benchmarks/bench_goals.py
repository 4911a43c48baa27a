"""An issue's goal in the benchmarks' output: a measured value against its goal, met or short (one wording for
every benchmark module; pytest puts this directory on the path of the modules beside it)."""


def verdict(value: float, goal: float) -> str:
    if value != value:  # NaN: a runner that did not run
        return "SHORT (not measured)"
    return "met" if value >= goal else "SHORT"
