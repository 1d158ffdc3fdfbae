"""The flip test's controls and the study that runs them (chapter 4, Table 4.1 and beyond).

Asserted (float64 unless said):
* the future stretch is exactly the log of the factor the corrected Eq. 4.14 puts on the q_{t,1}
  component of grad_{h_t} L (loss at T): q_{t,1} . grad = c_1 prod_{r>t} r_r^1, to 1e-10 relative
  to each sequence's largest component (rounding of T = 12 products);
* saliency is autograd's |dL/dx_t| of each image alone; single-pixel damage is flip_increase with
  k = 1 at every position; flip_increase gives flip_experiment's numbers;
* time-matched random positions are read within the window of the chosen steps, distinct in each
  draw, and window 0 returns the chosen set itself;
* the paired test: Delta is mean(y) - mean(b), its interval holds it, networks are counted;
* the qr_factors warm-up and q0 options continue the recursion they claim to continue;
* a small flip study: one row per (comparison, k), intervals hold the estimates, rankings are
  permutations of the positions.
"""

import numpy as np
import pytest
import torch
from torch import nn

from lyapbook import gradients as lg
from lyapbook.gradients import controls
from lyapbook.tasks import ftle
from lyapbook.tasks.flip_study import RANDOM, RANKINGS, flip_study, matched

pytestmark = pytest.mark.usefixtures("float64_default")


def pixel_network(n=6, classes=4, seed=0):
    torch.manual_seed(seed)
    rnn = nn.RNN(1, n, batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(1.3 / torch.linalg.eigvals(rnn.weight_hh_l0).abs().max())
    return lg.vanilla_rnn(rnn, nn.Linear(n, classes))


def images_and_labels(batch=5, pixels=12, classes=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, pixels, generator=gen)
    images[images < 0.4] = 0.0  # blank pixels, as in digits
    return images, torch.randint(0, classes, (batch,), generator=gen)


def test_future_stretch_is_the_q1_component_of_the_gradient():
    net = pixel_network()
    images, labels = images_and_labels()
    permutation = torch.randperm(12, generator=torch.Generator().manual_seed(2))
    x = lg.as_sequence(images, permutation)
    factors = lg.qr_factors(net, x, r_matrices=True)
    grad_h = lg.autograd_gradients(net, x, labels, loss_at="last").hidden
    along = torch.einsum("btn,btn->bt", factors.q[..., 0], grad_h)
    output = lg.cross_entropy_output_gradients(lg.rnn_forward(net, x).outputs, labels, "last")[:, -1]
    c1 = torch.einsum("bn,bn->b", factors.q[:, -1, :, 0], output @ net.readout_weight)
    predicted = c1[:, None] * torch.exp(controls.future_stretch(factors.log_r))
    assert ((along - predicted).abs() / along.abs().amax(1, keepdim=True)).max() < 1e-10
    log_r = factors.log_r
    expected = torch.stack([log_r[:, t + 1 :, 0].sum(1) for t in range(12)], dim=1)
    assert torch.allclose(controls.future_stretch(log_r), expected, atol=1e-12)


def test_saliency_is_each_images_own_input_gradient():
    net = pixel_network()
    images, labels = images_and_labels()
    ours = controls.input_saliency(net, images, labels, batch_size=2)
    for i in range(images.shape[0]):
        x = lg.as_sequence(images[i : i + 1]).requires_grad_(True)
        loss = nn.functional.cross_entropy(lg.final_logits(net, x), labels[i : i + 1])
        (gradient,) = torch.autograd.grad(loss, x)
        assert torch.allclose(ours[i], gradient[0, :, 0].abs(), atol=1e-12)
    with pytest.raises(ValueError, match="one value per step"):
        controls.input_saliency(lg.vanilla_rnn(nn.RNN(2, 3, batch_first=True), nn.Linear(3, 2)), images, labels)


def test_single_flip_damage_and_flip_increase_agree_with_the_flip_experiment():
    net = pixel_network()
    images, labels = images_and_labels()
    damage = controls.single_flip_damage(net, images, labels)
    by_position = torch.stack([lg.flip_increase(net, images, labels, torch.tensor([p])) for p in range(12)], dim=1)
    assert torch.allclose(damage, by_position, atol=1e-12)
    order = torch.argsort(torch.rand(5, 12, generator=torch.Generator().manual_seed(3)), dim=1)
    result = lg.flip_experiment(net, images, labels, order, [1, 3], draws=4, seed=0)
    again = lg.flip_increase(net, images, labels, order[:, :3])
    assert torch.allclose(result.r_increase[1], again, atol=1e-12)
    drawn = lg.flip_increase(net, images, labels, result.random_positions[0][:, None].expand(-1, 5, -1))
    assert torch.allclose(result.random_increase[0], drawn, atol=1e-12)


def test_time_matched_positions_stay_near_the_chosen_steps():
    gen = torch.Generator().manual_seed(0)
    permutation = torch.randperm(20, generator=gen)
    chosen = torch.tensor([[0, 1, 2], [10, 15, 19]])
    picked = controls.time_matched_positions(chosen, 20, draws=30, window=2, permutation=permutation, generator=gen)
    assert picked.shape == (30, 2, 3)
    steps = torch.argsort(permutation)[picked]  # back from positions to the steps that read them
    distance = (steps[..., :, None] - chosen[None, :, None, :]).abs().amin(-1)
    assert int(distance.max()) <= 2
    assert all(len(set(row.tolist())) == 3 for row in picked.reshape(-1, 3))
    same = controls.time_matched_positions(chosen, 20, draws=3, window=0, generator=gen)
    assert all(sorted(same[d, i].tolist()) == sorted(chosen[i].tolist()) for d in range(3) for i in range(2))
    with pytest.raises(ValueError, match="widen it"):
        controls.time_matched_positions(torch.tensor([[0, 0, 0]]), 20, draws=1, window=0)


def test_rankings_order_every_position_and_skip_sends_steps_last():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])
    permutation = torch.tensor([4, 0, 3, 1, 2])
    position_scores, order = lg.order_by_step_scores(scores, permutation)
    assert position_scores.tolist() == [[4.0, 2.0, 1.0, 3.0, 5.0]] and order.tolist() == [[4, 0, 3, 1, 2]]
    skipped = controls.skip_first_steps(scores, 2)
    assert lg.order_by_step_scores(skipped, permutation)[1].tolist() == [[3, 1, 2, 0, 4]]  # ties: position order
    recency = controls.reading_recency(1, 5)
    assert lg.order_by_step_scores(recency, permutation)[1].tolist() == [[2, 1, 3, 0, 4]]  # last read first
    with pytest.raises(ValueError, match="steps must be an int"):
        controls.skip_first_steps(scores, 5)


def test_paired_test_counts_networks_and_holds_its_estimate():
    rng = np.random.default_rng(0)
    increase = np.concatenate([rng.normal(1.0, 0.3, 10), rng.normal(-1.0, 0.3, 10)])
    baseline = rng.normal(0.0, 0.3, (20, 20))
    strata = np.repeat([0, 1], 10)
    test = lg.paired_flip_test(increase, baseline, strata=strata, draws=300)
    assert test.delta == pytest.approx(increase.mean() - baseline.mean())
    assert test.low <= test.delta <= test.high
    assert (test.networks, test.positive_networks, test.images) == (2, 1, 20)
    with pytest.raises(ValueError, match="one network label per image"):
        lg.paired_flip_test(increase, baseline, strata=[0, 1])


def test_warm_up_and_a_given_frame_continue_the_recursion():
    net = pixel_network()
    images, _ = images_and_labels()
    x = lg.as_sequence(images)
    whole = lg.qr_factors(net, x, k=2)
    warmed = lg.qr_factors(net, x, k=2, warmup=4)
    assert torch.allclose(warmed.log_r, whole.log_r[:, 4:], atol=1e-12)
    restarted = lg.qr_factors(net, x, k=2, q0=whole.q[:, -1])
    assert restarted.log_r.shape == whole.log_r.shape
    assert not torch.allclose(restarted.log_r[:, :3], whole.log_r[:, :3])  # another starting frame


@pytest.fixture(scope="module")
def tiny_study():
    setup = ftle.pixelwise_setup(hidden=6, max_steps=4, patience=None, eval_every=2)
    runs = ftle.train_seeds(setup, [0, 1], cache=False)
    return flip_study(runs, 4, ks=[1, 3], draws=5, warmup=4, skip=2, window=2)


def test_a_small_study_tests_every_comparison(tiny_study):
    study = tiny_study
    table = study.table(draws=200)
    comparisons = [(name, RANDOM) for name in RANKINGS] + [("R1", matched("R1")), ("future R1", matched("future R1"))]
    assert list(dict.fromkeys(zip(table.ranking, table.against))) == comparisons
    assert len(table) == len(comparisons) * 2 and (table.networks == 2).all()
    assert ((table.low <= table.delta + 1e-12) & (table.delta <= table.high + 1e-12)).all()
    for network in study.networks:
        for order in network.orders.values():
            assert torch.equal(order.sort(-1).values, torch.arange(64).expand(4, -1))
    assert study.strata.tolist() == [0] * 4 + [1] * 4
    assert study.damage_correlation("last read").shape == (8,)
    low_high = study.mean_delta("saliency", [0, 1], draws=100)
    assert low_high[1] <= low_high[0] <= low_high[2]


def test_the_study_refuses_what_it_cannot_use():
    rows = ftle.train_checkpoints(ftle.rowwise_setup(hidden=3, train_steps=1, batch_size=8), cache=False)
    with pytest.raises(ValueError, match="pixel-wise networks"):
        flip_study([rows], 2, ks=[1], draws=2, warmup=1, skip=1, window=1)
    pixels = ftle.train_checkpoints(ftle.pixelwise_setup(hidden=3, max_steps=1), cache=False)
    with pytest.raises(ValueError, match="window must be an int"):
        flip_study([pixels], 2, ks=[1], draws=2, warmup=1, skip=1, window=-1)
