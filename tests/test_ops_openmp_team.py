"""Work on torch's own OpenMP team (mamkpd.ops.openmp_team): every piece once, on several threads at once, errors
raised in the caller; the numba scan runs its task ranges there, or on its own pool, with the same bits."""

from __future__ import annotations

import threading

import pytest
import torch
from test_ops_selective_scan import assert_same_bits_on_thread_counts

from mamkpd.ops import openmp_team as team_module
from mamkpd.ops import scan_numba
from mamkpd.ops.openmp_team import openmp_runtime_path, openmp_team, run_on_team

ON_OPENMP = "parallel backend: OpenMP" in torch.__config__.parallel_info()
needs_team = pytest.mark.skipif(
    openmp_team() is None, reason="torch here does not run on an OpenMP runtime this process can call"
)


@pytest.mark.skipif(not ON_OPENMP, reason="this torch build does not run its parallel ops on OpenMP")
def test_the_runtime_found_is_the_one_torch_loaded():
    path = openmp_runtime_path()
    if path is None:
        pytest.skip("no /proc/self/maps here, or two OpenMP runtimes and neither is torch's")
    assert any(name in path for name in ("libgomp", "libomp", "libiomp5"))
    mapped = open("/proc/self/maps").read()
    assert path in mapped  # already in the process: calling it loads no second runtime


@needs_team
def test_every_piece_runs_once_on_two_threads_at_once():
    arrived, done, lock = threading.Barrier(2, timeout=20), [], threading.Lock()

    def piece(index):
        def work():
            if index < 2:
                arrived.wait()  # returns only once a second thread of the team runs a piece at the same time
            with lock:
                done.append((index, threading.get_native_id()))

        return work

    run_on_team(2, [piece(i) for i in range(9)])
    assert sorted(i for i, _ in done) == list(range(9))
    assert len({tid for i, tid in done if i < 2}) == 2
    assert threading.get_native_id() in {tid for _, tid in done}  # the calling thread works too


@needs_team
def test_an_error_in_a_piece_is_raised_in_the_caller_and_stops_the_rest():
    ran = []

    def failing():
        raise ValueError("piece 3 failed")

    pieces = [lambda i=i: ran.append(i) for i in range(3)] + [failing] + [lambda i=i: ran.append(i) for i in range(50)]
    with pytest.raises(ValueError, match="piece 3 failed"):
        run_on_team(1, pieces)
    assert ran == [0, 1, 2]  # one thread: in order, and nothing after the failure


@needs_team
def test_a_team_started_inside_a_piece_or_from_another_thread_runs_every_piece():
    """Inside a piece the team is that thread alone (OpenMP does not nest by default); a thread other than the
    main one (onnxruntime's, calling a custom-op scan) gets a team of its own."""
    done, lock = [], threading.Lock()

    def leaf(name):
        def work():
            with lock:
                done.append(name)

        return work

    def outer(index):
        return lambda: run_on_team(2, [leaf((index, j)) for j in range(3)])

    worker = threading.Thread(target=run_on_team, args=(2, [outer(i) for i in range(4)]))
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert sorted(done) == [(i, j) for i in range(4) for j in range(3)]


def test_without_a_team_it_says_so(monkeypatch):
    monkeypatch.setattr(team_module, "openmp_team", lambda: None)
    with pytest.raises(RuntimeError, match="openmp_team"):
        run_on_team(2, [lambda: None])


@pytest.mark.parametrize("on_team", [True, False], ids=["openmp-team", "own-pool"])
def test_the_scan_gives_the_same_bits_on_the_team_and_on_its_own_pool(monkeypatch, on_team):
    """Where torch runs on OpenMP the scan's ranges go to its team; elsewhere to the backend's pool."""
    if on_team and openmp_team() is None:
        pytest.skip("torch here does not run on an OpenMP runtime this process can call")
    if not on_team:
        monkeypatch.setattr(scan_numba, "openmp_team", lambda: None)
    used = []
    monkeypatch.setattr(scan_numba, "run_on_team", lambda *a: used.append(1) or run_on_team(*a))
    assert_same_bits_on_thread_counts("numba", (1, 2))
    assert bool(used) == on_team  # forward and backward on the team, or neither
