"""The benchmark: its baselines compute the same Jacobians as lyapbook, and its entry point runs and validates.

Speed itself is never asserted here (timings on a shared machine are noise); these tests check
that every section produces its table with the columns a chapter reads.
"""

import warnings

import pytest
import torch
from torch import nn

import lyapbook
from lyapbook.bench import FLOOR, SECTIONS, main, run_section
from lyapbook.reference import BASELINES, AutogradSystem
from lyapbook.rnn import as_system


@pytest.mark.parametrize("how", BASELINES)
@pytest.mark.parametrize("state", ["full", "hidden"])
@pytest.mark.parametrize("make", [lambda: nn.LSTM(3, 5, num_layers=2), lambda: nn.GRU(3, 5)])
def test_baseline_jacobians_equal_the_analytic_ones(make, state, how):
    module = make().double()
    system = as_system(module, state)
    h = torch.randn(4, system.state_dim, dtype=torch.float64)
    x_t = torch.randn(4, 3, dtype=torch.float64)
    expected = system.jacobian(h, x_t)
    # Both are exact up to rounding of a few dozen float64 operations per entry.
    assert torch.allclose(AutogradSystem(module, how, state=state).jacobian(h, x_t), expected, atol=1e-12)


def test_entry_point_prints_the_engine_table(capsys):
    assert main(["--arch", "gru", "--hidden", "4", "--steps", "4", "--baseline-steps", "2", "--t-on", "1", "3",
                 "--threads", "1", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "spectrum vs autograd per sequence" in out and FLOOR in out and "T_ON speed-up" in out


def test_sections_return_tables_with_their_columns():
    engine = run_section("engine", arch=["lstm"], hidden=[3], steps=4, baseline_steps=2, t_on=[1, 2], repeat=1, threads=1)
    assert list(engine["t_on"]) == [1, 2] and engine["T_ON speed-up"].iloc[0] == pytest.approx(1.0)
    assert {"autograd per sequence", FLOOR, "spectrum vs autograd per sequence"} <= set(engine.columns)
    kless = run_section("kless", kless_n=8, kless_k=2, kless_batch=2, steps=3, inputs=3, repeat=1, threads=1)
    assert len(kless) == 11 and (kless["max |exponent difference|"] < 1e-3).all()  # float32, 3 steps
    ensemble = run_section("spectra", networks=3, ensemble_hidden=4, sequences=2, steps=3, inputs=3, repeat=1, threads=1)
    assert list(ensemble["t_on"]) == [1, 5] and (ensemble["max |exponent difference|"] < 1e-4).all()
    assert set(ensemble["rounding floor"]) <= {"yes", "no"}
    with pytest.warns(RuntimeWarning, match="rounding floor"):  # the section reports the floor instead of warning
        lyapbook.lyapunov_spectrum(torch.nn.LSTM(3, 24, batch_first=True), torch.randn(2, 200, 3), t_on=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        floor = run_section("spectra", networks=2, ensemble_hidden=24, sequences=2, steps=200, inputs=3, repeat=1,
                            threads=1, ensemble_t_on=[20])
    assert list(floor["rounding floor"]) == ["yes"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--t-on", "0"], "must be a positive integer"),
        (["--threads", "0"], "must be a positive integer"),
        (["--steps", "5", "--baseline-steps", "10"], "must not exceed --steps"),
        (["--section", "nope"], "invalid choice"),
    ],
)
def test_bad_options_fail_with_a_message_not_a_traceback(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a build without CUDA")
def test_cuda_on_a_cpu_build_is_refused_before_any_timing(capsys):
    with pytest.raises(SystemExit):
        main(["--device", "cuda"])
    assert "no usable CUDA device" in capsys.readouterr().err


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for section in SECTIONS:
        assert section in out
    assert "steps between QR factorisations" in out and "torch CPU threads" in out


def test_run_benchmark_times_only_what_is_asked():
    from lyapbook.bench import run_benchmark

    short = run_benchmark("gru", 3, inputs=2, batch=2, steps=4, baseline_steps=2, repeat=1,
                          baselines=["autograd per sequence"], stages=False)
    assert set(short) == {"lyapbook", "autograd per sequence"}
    with pytest.raises(ValueError, match="baselines: unknown"):
        run_benchmark("gru", 3, steps=2, baseline_steps=1, repeat=1, baselines=["autograd per row"])
