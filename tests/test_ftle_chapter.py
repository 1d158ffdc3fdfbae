"""Chapter 4's wiring: the engine's Q and R in the gradient identities, the trained setups and their cache.

Asserted (float64):
* Eq. (4.14) with Q, R from the engine (``qr_factors``, a ``VanillaRNNSystem``): the corrected form
  equals automatic differentiation to 1e-12 for tanh and relu RNNs of several sizes with the loss at
  every step or the last; the printed form misses by more than 2 % (median) and both are exact when
  the Jacobians commute. Tolerance: as tests/test_gradients.py (rounding of T <= 20 products).
* The system's analytic Jacobian and input Jacobian equal autograd's (1e-12).
* ``gradient_alignment`` is Q^T Vh of its own parts; the flip images read in the network's order are
  exactly ``digits_data("pixels")``'s sequences; ``flipped_probabilities`` is the softmax of the
  flipped images' last logits.
* Setups: bad settings refused before training; the pixel-wise recurrent bias is zero and frozen;
  the checkpoints requested are kept; a second ``train_checkpoints`` loads from the cache.
"""

import numpy as np
import pytest
import torch
from torch import nn

from lyapbook import gradients as lg
from lyapbook.tasks import ftle
from lyapbook.systems import DynamicalSystem  # its autograd defaults are the reference
from lyapbook.tasks.data import digits_data

EXACT = 1e-12


pytestmark = pytest.mark.usefixtures("float64_default")


def random_case(n, nonlinearity="tanh", steps=20, batch=4, inputs=3, classes=10, seed=0):
    torch.manual_seed(seed)
    rnn = nn.RNN(inputs, n, nonlinearity=nonlinearity, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(1.2 / torch.linalg.eigvals(rnn.weight_hh_l0).abs().max())
    net = lg.vanilla_rnn(rnn, nn.Linear(n, classes))
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, steps, inputs, generator=gen)
    y = torch.randint(0, classes, (batch,), generator=gen)
    return net, x, y, 0.5 * torch.randn(batch, n, generator=gen)


@pytest.mark.filterwarnings("ignore:collapsed tangent direction", "ignore:rounding floor")  # relu rows vanish
@pytest.mark.parametrize("loss_at", ["all", "last"])
@pytest.mark.parametrize("n, nonlinearity", [(3, "tanh"), (16, "tanh"), (40, "tanh"), (16, "relu")])
def test_engine_factors_give_the_exact_gradient(n, nonlinearity, loss_at):
    check = lg.eq_4_14_check(*random_case(n, nonlinearity), loss_at=loss_at)
    assert check.corrected.max() < EXACT
    assert check.weight_error < EXACT
    assert check.frame().shape == (20, 3)


def test_engine_factors_printed_form_misses_unless_jacobians_commute():
    check = lg.eq_4_14_check(*random_case(16))
    assert check.printed[:, -2:].max() < EXACT  # one Jacobian at most in each product
    assert check.printed[:, :-2].median() > 0.02
    torch.manual_seed(3)
    v = torch.randn(6, 6)
    net = lg.VanillaRNN(torch.randn(6, 1), 0.9 * v / torch.linalg.eigvals(v).abs().max(), None,
                        torch.randn(4, 6), None, "identity")
    linear = lg.eq_4_14_check(net, torch.zeros(3, 12, 1), torch.tensor([0, 3, 1]), torch.randn(3, 6))
    assert linear.corrected.max() < EXACT and linear.printed.max() < EXACT


def test_engine_factors_follow_the_recursions():
    net, x, y, h0 = random_case(7, steps=6)
    jac = lg.step_jacobians(net, lg.rnn_forward(net, x, h0))
    forward = lg.qr_factors(net, x, h0, r_matrices=True)
    transposed = lg.qr_factors(net, x, h0, orientation="transposed", r_matrices=True)
    previous = torch.eye(7).expand(4, 7, 7)
    for t in range(6):
        assert torch.allclose(jac[:, t] @ previous, forward.q[:, t] @ forward.r[:, t], atol=EXACT)
        previous = forward.q[:, t]
    assert torch.allclose(jac[:, 0].mT, transposed.q[:, 0] @ transposed.r[:, 0], atol=EXACT)
    assert (torch.diagonal(forward.r, dim1=-2, dim2=-1) > 0).all()
    assert torch.allclose(forward.log_r, torch.log(torch.diagonal(forward.r, dim1=-2, dim2=-1)), atol=EXACT)
    with pytest.raises(ValueError, match="orientation must be 'forward'"):
        lg.qr_factors(net, x, h0, orientation="backward")
    few = lg.qr_factors(net, x, h0, k=3, r_matrices=True)
    grads = lg.cross_entropy_output_gradients(lg.rnn_forward(net, x, h0).outputs, y)
    with pytest.raises(ValueError, match="square Q"):
        lg.hidden_gradients_qr(few.q, few.r, net.readout_weight, grads)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_system_jacobians_equal_autograd(nonlinearity):
    net, x, _, h0 = random_case(5, nonlinearity, steps=2)
    system = lg.VanillaRNNSystem(net)
    assert torch.allclose(system.jacobian(h0, x[:, 0]), DynamicalSystem.jacobian(system, h0, x[:, 0]), atol=EXACT)
    assert torch.allclose(system.input_jacobian(h0, x[:, 0]), DynamicalSystem.input_jacobian(system, h0, x[:, 0]),
                          atol=EXACT)
    with pytest.raises(TypeError, match="VanillaRNN"):
        lg.VanillaRNNSystem(nn.RNN(2, 3))


def test_gradient_alignment_is_assembled_from_its_parts():
    net, x, y, h0 = random_case(6, steps=5, batch=3)
    result = lg.gradient_alignment(net, x, y, h0, orientation="forward")
    svd = lg.gradient_svd(lg.per_step_weight_gradients(net, x, y, h0))
    q = lg.qr_factors(net, x, h0).q
    # singular vectors are defined up to sign: compare |cosines|
    assert torch.allclose(result.alignments.abs(), (q.transpose(0, 1).mT @ svd.vh.mT).abs(), atol=1e-10)
    assert torch.allclose(result.participation, lg.participation_ratio(svd.s), atol=EXACT)
    # each row of A is the coordinates of a unit vector in an orthonormal basis: unit norm
    assert torch.allclose(result.alignments.norm(dim=-1), torch.ones(5, 3, 6), atol=1e-10)


def test_setup_validation_and_model():
    with pytest.raises(ValueError, match="kind must be"):
        ftle.FTLESetup(kind="columns", hidden=4, steps=2, checkpoints=(0,), optimizer="sgd", lr=0.1)
    with pytest.raises(ValueError, match="checkpoints must be optimiser steps"):
        ftle.FTLESetup(kind="rows", hidden=4, steps=2, checkpoints=(5,), optimizer="sgd", lr=0.1)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        ftle.FTLESetup(kind="rows", hidden=4, steps=2, checkpoints=(0,), optimizer="adam", lr=0.1)
    with pytest.raises(TypeError, match="FTLESetup"):
        ftle.train_checkpoints({"kind": "rows"})
    pixels = ftle.pixelwise_setup(hidden=5, max_steps=3)
    model = ftle.build_setup_model(pixels, input_size=1)
    assert torch.equal(model.core.bias_hh_l0, torch.zeros(5)) and not model.core.bias_hh_l0.requires_grad
    rows = ftle.rowwise_setup(hidden=5, train_steps=4, checkpoints=(2,), recurrent_gain=0.005)
    model = ftle.build_setup_model(rows, input_size=8)
    assert not model.core.bias and model.dropout.p == 0.1
    assert model.core.weight_hh_l0.std() < 0.01  # gain 0.005: V nearly zero
    assert rows.checkpoints == (0, 2, 4)


def test_checkpoints_are_kept_and_cached(tmp_path, monkeypatch):
    setup = ftle.rowwise_setup(hidden=4, train_steps=3, checkpoints=(1,), batch_size=16)
    run = ftle.train_checkpoints(setup, cache=tmp_path)
    assert sorted(run.states) == [0, 1, 3] and run.steps_run == 3 and len(run.train_loss) == 3
    assert not torch.equal(run.states[0]["core.weight_hh_l0"], run.states[3]["core.weight_hh_l0"])
    monkeypatch.setattr(ftle, "_train", lambda *a, **k: pytest.fail("trained again despite the cache"))
    again = ftle.train_checkpoints(setup, cache=tmp_path)
    assert torch.equal(again.states[3]["core.weight_hh_l0"], run.states[3]["core.weight_hh_l0"])
    assert again.model(1).core.weight_hh_l0.dtype == torch.float64
    with pytest.raises(KeyError, match="not a checkpoint"):
        again.model(2)


def test_flip_images_are_what_the_pixel_network_reads():
    setup = ftle.pixelwise_setup(hidden=4, max_steps=1)
    flip = ftle.flip_images_of(setup, 5)
    sequences = digits_data("pixels")[2]
    assert torch.equal(lg.as_sequence(flip.images, flip.permutation), sequences.x[:5])
    assert torch.equal(flip.labels, sequences.y[:5])
    with pytest.raises(ValueError, match="kind must be 'pixels'"):
        ftle.flip_images_of(ftle.rowwise_setup(hidden=4, train_steps=1), 5)
    with pytest.raises(ValueError, match="count must be an int"):
        ftle.flip_images_of(setup, 10**6)


def test_flipped_probabilities_are_the_softmax_of_the_flipped_images():
    torch.manual_seed(0)
    net = lg.vanilla_rnn(nn.RNN(1, 5, batch_first=True), nn.Linear(5, 3))
    images = torch.rand(2, 6)
    images[:, 0] = 0.0
    positions = torch.tensor([0, 2])
    flipped, up = lg.flip_images(images, positions)
    assert up[:, 0].all() and torch.equal(flipped[:, 0], torch.ones(2))
    probabilities = lg.flipped_probabilities(net, images, positions)
    expected = torch.softmax(lg.final_logits(net, lg.as_sequence(flipped)), dim=-1)
    assert torch.allclose(probabilities, expected, atol=EXACT)
    assert torch.allclose(probabilities.sum(-1), torch.ones(2), atol=EXACT)


def test_paper_timing_refuses_bad_arguments():
    setup = ftle.pixelwise_setup(hidden=4, max_steps=1)
    with pytest.raises(ValueError, match="length_fraction"):
        ftle.paper_seconds_per_step(setup, length_fraction=0)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        ftle.paper_seconds_per_step(setup, steps=0)
    assert np.isfinite(ftle.paper_seconds_per_step(setup, steps=1, length_fraction=0.01))


def test_pixel_networks_train_alike_alone_or_in_a_group():
    setup = ftle.pixelwise_setup(hidden=5, max_steps=6, patience=None, eval_every=3)
    alone = ftle.train_seeds(setup, [1], cache=False)[0]
    group = ftle.train_seeds(setup, [0, 1, 2], cache=False)
    assert [run.setup.seed for run in group] == [0, 1, 2]
    for name, value in alone.states[6].items():  # the same arithmetic, batched: equal to rounding
        assert torch.allclose(value, group[1].states[6][name], rtol=0, atol=1e-12), name
    assert not torch.equal(group[0].states[6]["core.weight_hh_l0"], group[1].states[6]["core.weight_hh_l0"])
    for run in group:
        assert torch.equal(run.states[6]["core.bias_hh_l0"], torch.zeros(5))  # held at zero
    with pytest.raises(ValueError, match="distinct ints"):
        ftle.train_seeds(setup, [0, 0], cache=False)


def test_a_plateau_keeps_the_best_weights():
    setup = ftle.pixelwise_setup(hidden=5, max_steps=40, patience=2, eval_every=2, lr=0.02)
    run = ftle.train_seeds(setup, [0], cache=False)[0]
    best = int(np.argmax(run.val_accuracy))  # the first best: later ties are no improvement
    assert run.final_step == run.best_step == int(run.val_steps[best])
    assert run.final_accuracy == run.val_accuracy.max()
    stopped_early = run.steps_run < setup.steps
    assert not stopped_early or run.steps_run == run.best_step + 2 * setup.eval_every
    with pytest.raises(ValueError, match="patience must be a positive int"):
        ftle.pixelwise_setup(hidden=5, max_steps=4, patience=0)


@pytest.mark.parametrize("profile", ["ci", "teaching", "paper"])
def test_pages_that_share_a_network_ask_for_the_same_one(profile):
    from lyapbook.book.chapters import book_root, discover
    from lyapbook.book.profiles import load_profiles, resolve_parameters

    root = book_root()
    pages = {c.stem[:3]: resolve_parameters(c, profile, load_profiles(root)) for c in discover(root)
             if c.stem.startswith("04")}
    rows = ("seeds", "dataset", "hidden", "train_steps", "pr_checkpoints", "recurrent_gain", "batch_size", "lr",
            "sequences")
    assert {n: pages["04a"][n] for n in rows} == {n: pages["04c"][n] for n in rows}
    pixels = {"seeds": "pixel_seeds", "hidden": "pixel_hidden", "max_steps": "max_steps", "patience": "patience",
              "eval_every": "eval_every", "target_accuracy": "target_accuracy", "lr": "pixel_lr",
              "batch_size": "pixel_batch_size", "images": "images", "draws": "draws", "example_k": "example_k",
              "dataset": "dataset"}
    assert {n: pages["04b"][n] for n in pixels} == {n: pages["04c"][m] for n, m in pixels.items()}
