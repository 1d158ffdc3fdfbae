"""Ensembles: E networks trained as one batched model follow the trajectories they follow alone.

Identities checked (float64; tolerances are rounding of a few training steps, ~1e-15 per step,
set at 1e-10): for every architecture and optimiser, the weights and losses of each member after
training equal those of :func:`train` with the same seed, batches, learning rate, schedule and
clipping; with dropout and noise, a member's training does not depend on the other members of its
group; a member whose loss becomes non-finite stops updating and the others are unaffected;
early stopping stops each member where its own validation loss says; FORCE learning of a group
equals FORCE learning of each reservoir alone.
"""

import warnings

import numpy as np
import pytest
import torch

from lyapbook.diagnostics import LyapunovWarning
from lyapbook.rnn import Rank1Reservoir
from lyapbook.tasks.data import Split, digits_data, lorenz96_data
from lyapbook.tasks.ensemble import Ensemble, evaluate_ensemble, member_spectra, train_ensemble
from lyapbook.tasks.models import ARCHITECTURES, build_model
from lyapbook.tasks.training import evaluate, force_train, force_train_ensemble, spectrum_callback, train

TOLERANCE = 1e-10  # a few steps of float64 rounding, far below any training effect


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    train_split, val_split, _ = digits_data("rows")
    return Split(train_split.x[:40].double(), train_split.y[:40]), Split(val_split.x[:24].double(), val_split.y[:24])


def deterministic(arch):
    """The Noisy RNN without its training noise: the case where ensemble and train() draw nothing."""
    return {"sigma_add": 0.0, "sigma_mult": 0.0} if arch == "noisy" else {}


def largest_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    return max((a.state_dict()[name] - value).abs().max().item() for name, value in b.state_dict().items())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_trains_as_it_would_alone(arch, digits):
    train_split, val_split = digits
    seeds, ps, lrs = [3, 4, 5], [0.3, 0.6, 0.9], [1e-2, 3e-2, 5e-3]
    models = [build_model(arch, 8, 6, 10, init_p=p, seed=s, cell=deterministic(arch)).double() for s, p in zip(seeds, ps)]
    ensemble = Ensemble(models)
    histories = train_ensemble(ensemble, train_split, val_split, epochs=2, seeds=seeds, lr=lrs, batch_size=16, clip=0.5,
                               lr_decay=[0.5, 1.0, 0.8], decay_after=[0, 0, 1])
    for k, model in enumerate(models):
        alone = train(model, train_split, val_split, epochs=2, lr=lrs[k], batch_size=16, seed=seeds[k], clip=0.5,
                      lr_decay=[0.5, 1.0, 0.8][k], decay_after=[0, 0, 1][k])
        assert largest_difference(ensemble.member(k), model) < TOLERANCE
        for mine, theirs in zip(histories[k].records, alone):
            assert mine.epoch == theirs.epoch and (mine.lr == theirs.lr or mine.lr == pytest.approx(theirs.lr, rel=1e-12))
            assert abs(mine.val_loss - theirs.val_loss) < TOLERANCE
            assert (mine.train_loss is None) == (theirs.train_loss is None)
            if mine.train_loss is not None:
                assert abs(mine.train_loss - theirs.train_loss) < TOLERANCE


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adagrad"])
def test_other_optimisers_and_token_inputs_train_as_alone(optimizer):
    # Character-like token inputs with a prediction at every step, and no bias (the CharRNN setting).
    torch.manual_seed(0)
    tokens = torch.randint(0, 7, (30, 12))
    split = Split(tokens[:, :-1], tokens[:, 1:])
    options = dict(vocabulary=7, output="all", loss="cross_entropy", bias=False)
    models = [build_model("lstm", 5, 6, 7, init_p=0.2 * (s + 1), seed=s, **options).double() for s in range(2)]
    ensemble = Ensemble(models)
    train_ensemble(ensemble, split, split, epochs=1, seeds=[0, 1], lr=[0.05, 0.1], batch_size=8, optimizer=optimizer)
    for k, model in enumerate(models):
        train(model, split, split, epochs=1, lr=[0.05, 0.1][k], batch_size=8, seed=k, optimizer=optimizer)
        assert largest_difference(ensemble.member(k), model) < TOLERANCE


def test_regression_outputs_and_evaluation_agree_with_the_single_network_code():
    train_split, val_split, _ = lorenz96_data(sequences=20, seq_len=10)
    models = [build_model("gru", 20, 5, 20, output="all", seed=s).double() for s in range(2)]
    ensemble = Ensemble(models)
    losses, accuracy = evaluate_ensemble(ensemble, Split(val_split.x.double(), val_split.y.double()))
    assert accuracy is None
    for k, model in enumerate(models):
        assert losses[k].item() == pytest.approx(evaluate(model, val_split)[0], abs=TOLERANCE)


def test_dropout_and_noise_of_a_member_do_not_depend_on_its_group(digits):
    train_split, val_split = digits
    for arch, options in (("lstm", dict(dropout=0.3)), ("noisy", {})):
        def members(seeds):
            return [build_model(arch, 8, 6, 10, init_p=0.5, seed=s, **options).double() for s in seeds]

        group, alone = Ensemble(members([7, 8, 9])), Ensemble(members([8]))
        train_ensemble(group, train_split, val_split, epochs=1, seeds=[7, 8, 9], batch_size=16)
        train_ensemble(alone, train_split, val_split, epochs=1, seeds=[8], batch_size=16)
        assert largest_difference(group.member(1), alone.member(0)) < TOLERANCE
        # ...and the randomness is real: without it the network ends elsewhere.
        quiet = build_model(arch, 8, 6, 10, init_p=0.5, seed=8, **options).double()
        quiet.dropout.p = 0.0
        if arch == "noisy":
            quiet.core.sigma_add = quiet.core.sigma_mult = 0.0
        calm = Ensemble([quiet])
        train_ensemble(calm, train_split, val_split, epochs=1, seeds=[8], batch_size=16)
        assert largest_difference(calm.member(0), alone.member(0)) > 1e-4


def test_a_member_whose_loss_diverges_is_marked_failed_and_the_others_go_on():
    train_split, val_split, _ = lorenz96_data(sequences=20, seq_len=10)
    train_split, val_split = (Split(s.x.double(), s.y.double()) for s in (train_split, val_split))
    lrs = [1e-2, 1e200, 2e-2]  # the middle network's first plain SGD step makes its squared error overflow
    models = [build_model("rnn", 20, 6, 20, output="all", init_p=0.5, seed=s).double() for s in range(3)]
    ensemble = Ensemble(models)
    histories = train_ensemble(ensemble, train_split, val_split, epochs=2, seeds=[0, 1, 2], lr=lrs, batch_size=8,
                               optimizer="sgd", clip=None)
    assert [h.failed_epoch for h in histories] == [None, 1, None]
    assert histories[1].stopped_epoch == 1 and len(histories[1].records) == 2
    assert all(torch.isfinite(p).all() for p in ensemble.member(1).parameters())  # its last finite weights are kept
    for k in (0, 2):
        train(models[k], train_split, val_split, epochs=2, lr=lrs[k], batch_size=8, seed=k, optimizer="sgd", clip=None)
        assert largest_difference(ensemble.member(k), models[k]) < TOLERANCE
        assert histories[k].stopped_epoch == 2


def test_early_stopping_per_member_matches_train(digits):
    train_split, val_split = digits
    lrs, patience = [0.5, 0.5, 1e-2], [2, None, 3]  # the first overshoots and stops; the second has no patience
    models = [build_model("gru", 8, 6, 10, seed=s).double() for s in (0, 0, 1)]  # the first two are twins
    ensemble = Ensemble(models)
    histories = train_ensemble(ensemble, train_split, val_split, epochs=8, seeds=[0, 0, 1], lr=lrs, batch_size=16,
                               patience=patience)
    for k, model in enumerate(models):
        alone = train(model, train_split, val_split, epochs=8, lr=lrs[k], batch_size=16, seed=[0, 0, 1][k], patience=patience[k])
        assert len(histories[k].records) == len(alone) and histories[k].stopped_epoch == alone[-1].epoch
        assert histories[k].best_epoch == min(range(len(alone)), key=lambda e: alone[e].val_loss)
        assert largest_difference(ensemble.member(k), model) < 1e-6  # 24 steps at lr 0.5 amplify rounding to ~1e-9
    first, second, third = histories
    assert first.early_stopped and first.stopped_epoch - first.best_epoch == 2 and first.stopped_epoch < 8
    assert not second.early_stopped and second.stopped_epoch == 8
    assert [r.val_loss for r in second.records[: first.stopped_epoch + 1]] == pytest.approx([r.val_loss for r in first.records])
    assert third.early_stopped and third.stopped_epoch - third.best_epoch == 3


def test_spectra_of_members_and_conversion_back_to_modules(digits):
    train_split, val_split = digits
    models = [build_model("lem", 8, 5, 10, init_p=0.4, seed=s).double() for s in range(2)]
    ensemble = Ensemble(models)
    train_ensemble(ensemble, train_split, val_split, epochs=1, seeds=[0, 1], batch_size=16)
    spectra = member_spectra(ensemble, [1, 0], val_split.x[:3], warmup=2)  # one batched run
    for j, batched in zip([1, 0], spectra):
        alone = spectrum_callback(val_split.x[:3], warmup=2)(ensemble.member(j), 1)
        assert torch.allclose(batched["spectrum"], alone["spectrum"])
        assert torch.allclose(batched["spectrum_std"], alone["spectrum_std"])
    assert not torch.allclose(spectra[0]["spectrum"], spectra[1]["spectrum"])  # in the order asked
    rebuilt = build_model("lem", 8, 5, 10, seed=99).double()
    rebuilt.load_state_dict(ensemble.state_dicts()[0])
    assert torch.equal(rebuilt(val_split.x[:4]), ensemble.member(0)(val_split.x[:4]))


def test_member_spectra_record_upper_bounds_instead_of_warning(digits):
    _, val_split = digits
    # a saturated tanh RNN (weights up to 50) has units at rest: exponents that are only upper bounds
    models = [build_model("rnn", 8, 6, 10, init_p=p, seed=0).double() for p in (0.3, 50.0)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mild, saturated = member_spectra(Ensemble(models), [0, 1], val_split.x[:3], warmup=2)
    assert not [w for w in caught if issubclass(w.category, LyapunovWarning)]
    assert mild["spectrum_bounded"] == 0 and 1 <= saturated["spectrum_bounded"] <= 6


def test_a_group_mixing_architectures_or_sizes_is_refused():
    with pytest.raises(ValueError, match="models\\[1\\] has hidden_size 8 but models\\[0\\] has 6"):
        Ensemble([build_model("gru", 8, 6, 10), build_model("gru", 8, 8, 10)])
    with pytest.raises(ValueError, match="models\\[1\\] has arch 'lstm'"):
        Ensemble([build_model("gru", 8, 6, 10), build_model("lstm", 8, 6, 10)])
    with pytest.raises(ValueError, match="seeds: give one per network"):
        train_ensemble(Ensemble([build_model("gru", 8, 6, 10)]), *digits_data("rows")[:2], epochs=1, seeds=[0, 1])


def test_force_learning_of_a_group_equals_each_reservoir_alone():
    targets = torch.stack([torch.sin(torch.arange(900) * 0.1 * w) for w in (1.0, 2.0)]).double()
    group = [Rank1Reservoir(30, g=g, seed=s, tau=1.0).double() for g, s in ((1.3, 0), (1.7, 1))]
    starts = torch.randn(2, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    together = force_train_ensemble(group, targets, val_points=300, states0=starts, keep_states=4)
    assert together["states"].shape == (2, 4, 30)
    for k, (g, s) in enumerate(((1.3, 0), (1.7, 1))):
        alone = Rank1Reservoir(30, g=g, seed=s, tau=1.0).double()
        result = force_train(alone, targets[k], val_points=300, state0=starts[k])
        assert result["val_mae"] == pytest.approx(float(together["val_mae"][k]), abs=TOLERANCE)
        assert torch.allclose(alone.w_out, group[k].w_out, atol=TOLERANCE)
    assert np.isfinite(together["train_mae"].numpy()).all()


def test_the_bench_section_times_both_ways(capsys):
    from lyapbook.bench import main
    from lyapbook.tasks.bench_ensemble import per_network_estimates

    assert main(["ensemble", "--arch", "rnn", "--hidden", "4", "--networks", "2", "--steps", "1", "--repeat", "1",
                 "--threads", "1"]) == 0
    line = [row for row in capsys.readouterr().out.splitlines() if row.startswith("rnn")][0]
    one_by_one, together, ratio = (float(v.rstrip("x")) for v in line.split("|")[1].split())
    assert one_by_one > 0 and together > 0 and ratio == pytest.approx(one_by_one / together, rel=0.2)  # printed to 0.1 ms
    tiny = {"toy": ("gru", 4, 3, 5, 8, 10, False, 64, 2, 2), "toy tokens": ("lstm", 4, 3, 5, 8, 6, True, 16, 1, 2)}
    rows = per_network_estimates(tiny, steps=1)
    assert [r["steps"] for r in rows] == [16, 2]
    assert all(r["per_network_s"] == pytest.approx(r["step_s"] * r["steps"] / 2) for r in rows)


def test_the_in_place_adam_step_rounds_exactly_as_the_masked_step():
    from lyapbook.optim import BatchedOptimizer

    generator = torch.Generator().manual_seed(3)
    start = torch.randn(3, 7, 2, dtype=torch.float64, generator=generator)
    grads = [torch.randn(3, 7, 2, dtype=torch.float64, generator=generator) for _ in range(4)]
    lr = torch.tensor([1e-2, 3e-2, 5e-3], dtype=torch.float64)
    runs = []
    for active in (torch.tensor([True, True, True]), torch.tensor([True, True, False])):  # in place; masked
        param = start.clone()
        opt = BatchedOptimizer("adam", {"w": param}, lr)
        for grad in grads:
            param.grad = grad.clone()
            opt.step(active)
        runs.append(param)
    assert torch.equal(runs[0][:2], runs[1][:2]) and torch.equal(runs[1][2], start[2])
    assert not torch.equal(runs[0][:2], start[:2])


def test_an_ensemble_can_be_deep_copied_and_its_copy_trains_alone(digits):
    import copy

    train_split, val_split = digits
    ensemble = Ensemble([build_model("lstm", 8, 6, 10, seed=s).double() for s in range(2)])
    twin = copy.deepcopy(ensemble)
    train_ensemble(twin, train_split, val_split, epochs=1, seeds=[0, 1], batch_size=16)
    assert largest_difference(ensemble.member(0), build_model("lstm", 8, 6, 10, seed=0).double()) == 0.0
    assert largest_difference(twin.member(0), ensemble.member(0)) > 1e-4
