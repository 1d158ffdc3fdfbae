"""lyapbook.gradients against backpropagation, known answers and the dissertation's printed numbers.

Identities asserted (float64 throughout):
* corrected Eq. (4.14): with J_r Q_{r-1} = Q_r R_r (square Q), grad_{h_t} L =
  sum_{s>=t} Q_t (R_s...R_{t+1})^T Q_s^T W^T grad_{o_s} L equals backpropagation through the nn.RNN
  module itself, for tanh and relu networks of several sizes, losses at every step or at the last;
* printed Eq. (4.14) (transposed QR) equals sum_s (J_{t+1}...J_s)^T W^T g_s, misses the gradient by
  O(0.1) on a random tanh RNN, and is exact when the Jacobians commute (linear, input-free);
* Eq. (4.6) equals autograd's grad_V L; per-step Delta V_t equals a per-sample, per-step loop;
* participation ratio: 1 for rank 1, 1/N for the identity; alignment of known vectors;
* the flip protocol on a network whose loss is a closed-form function of the pixels;
* Table 4.1's p-values from its printed Delta and sigma, within their rounding.

Tolerances: 1e-12 relative for exact identities in float64 (about 1e4 rounding errors of 1e-16
accumulated over T <= 20 steps of products of N <= 40 matrices); the Table 4.1 checks allow exactly
the printed rounding (half a unit in the third decimal of Delta, sigma and p).
"""

from statistics import NormalDist

import numpy as np
import pytest
import torch
from torch import nn

from lyapbook import gradients as lg
from lyapbook.gradients import paper
from lyapbook.tasks import build_model

EXACT = 1e-12


pytestmark = pytest.mark.usefixtures("float64_default")


# ---------------------------------------------------------------------------------------------
# helpers: a small local QR recursion (the engine is not under test here) and module references


def qr_positive(a):
    """QR with a non-negative R diagonal (a zero stays zero: relu rows can vanish)."""
    q, r = torch.linalg.qr(a)
    signs = torch.where(torch.diagonal(r, dim1=-2, dim2=-1) < 0, -1.0, 1.0)
    return q * signs[..., None, :], r * signs[..., :, None]


def qr_recursion(jacobians, transposed=False):
    """Q_t, R_t for t = 1..T from Q_0 = I: J_t Q_{t-1} = Q_t R_t, or J_t^T Q_{t-1} = Q_t R_t."""
    batch, steps, n, _ = jacobians.shape
    q = torch.eye(n).expand(batch, n, n)
    qs, rs = [], []
    for t in range(steps):
        jac = jacobians[:, t].mT if transposed else jacobians[:, t]
        q, r = qr_positive(jac @ q)
        qs.append(q)
        rs.append(r)
    return torch.stack(qs, 1), torch.stack(rs, 1)


def random_network(n, inputs=3, classes=10, radius=1.2, bias=True, nonlinearity="tanh", seed=0, batch_first=True):
    torch.manual_seed(seed)
    rnn = nn.RNN(inputs, n, nonlinearity=nonlinearity, bias=bias, batch_first=batch_first)
    with torch.no_grad():
        rnn.weight_hh_l0.mul_(radius / torch.linalg.eigvals(rnn.weight_hh_l0).abs().max())
    return rnn, nn.Linear(n, classes)


def module_backprop(rnn, readout, x, y, h0, loss_at):
    """grad_{h_t} L (batch, T, N) and grad_V L (N, N) of the batch-summed loss by stepping the module itself."""
    rnn.zero_grad()
    h, states = h0[None], []
    for t in range(x.shape[1]):
        _, h = rnn(x[:, t : t + 1], h)
        h.retain_grad()
        states.append(h)
    logits = torch.stack([readout(s[0]) for s in states], dim=1)  # (B, T, C)
    ce = nn.functional.cross_entropy(logits.flatten(0, 1), y[:, None].expand(-1, x.shape[1]).flatten(), reduction="none")
    ce = ce.reshape(x.shape[0], x.shape[1])
    (ce.sum() if loss_at == "all" else ce[:, -1].sum()).backward()
    return torch.stack([s.grad[0] for s in states], dim=1), rnn.weight_hh_l0.grad.clone()


def relative_errors(a, b):
    """Norm-wise relative error of each vector on the last axis."""
    return (a - b).norm(dim=-1) / b.norm(dim=-1)


def setup(n, steps=20, batch=4, loss_at="all", **kwargs):
    rnn, readout = random_network(n, **kwargs)
    net = lg.vanilla_rnn(rnn, readout)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, steps, rnn.input_size, generator=generator)
    y = torch.randint(0, readout.out_features, (batch,), generator=generator)
    h0 = 0.5 * torch.randn(batch, n, generator=generator)
    trajectory = lg.rnn_forward(net, x, h0)
    return rnn, readout, net, x, y, h0, trajectory, lg.cross_entropy_output_gradients(trajectory.outputs, y, loss_at)


# ---------------------------------------------------------------------------------------------
# Eq. (4.14), corrected and printed; Eq. (4.6)


@pytest.mark.parametrize("loss_at", ["all", "last"])
@pytest.mark.parametrize("n, nonlinearity, bias", [(3, "tanh", True), (16, "tanh", False), (40, "tanh", True), (16, "relu", True)])
def test_corrected_identity_equals_backpropagation(n, nonlinearity, bias, loss_at):
    rnn, readout, net, x, y, h0, trajectory, output_grads = setup(n, loss_at=loss_at, nonlinearity=nonlinearity, bias=bias)
    q, r = qr_recursion(lg.step_jacobians(net, trajectory))
    ours = lg.hidden_gradients_qr(q, r, net.readout_weight, output_grads)
    reference, reference_v = module_backprop(rnn, readout, x, y, h0, loss_at)
    assert relative_errors(ours, reference).max() < EXACT
    # Eq. (4.6) from these hidden gradients, summed over the batch, is the module's grad_V L
    per_sequence = lg.recurrent_weight_gradient(net, trajectory, ours)
    assert ((per_sequence.sum(0) - reference_v).norm() / reference_v.norm()) < EXACT


@pytest.mark.parametrize("loss_at", ["all", "last"])
def test_autograd_reference_equals_module_backpropagation_per_sequence(loss_at):
    rnn, readout, net, x, y, h0, _, _ = setup(7, steps=9, batch=3, loss_at=loss_at)
    ours = lg.autograd_gradients(net, x, y, h0, loss_at)
    reference, _ = module_backprop(rnn, readout, x, y, h0, loss_at)
    assert relative_errors(ours.hidden, reference).max() < EXACT
    for i in range(3):  # per sequence: the module's gradient of sequence i's loss alone
        _, reference_v = module_backprop(rnn, readout, x[i : i + 1], y[i : i + 1], h0[i : i + 1], loss_at)
        assert ((ours.recurrent[i] - reference_v).norm() / reference_v.norm()) < EXACT


def test_printed_form_is_the_reversed_product_and_misses_the_gradient():
    # spec §3.3: N = 16, T = 20, inputs 3, 10 classes, B = 4, spectral radius 1.2, per-step CE
    rnn, readout, net, x, y, h0, trajectory, output_grads = setup(16)
    jacobians = lg.step_jacobians(net, trajectory)
    q_t, r_t = qr_recursion(jacobians, transposed=True)
    printed = lg.hidden_gradients_printed(q_t, r_t, net.readout_weight, output_grads)
    # literally: sum_s (J_{t+1} ... J_s)^T W^T g_s, the product in the order Eqs. (4.12)-(4.13) telescope
    v = output_grads @ net.readout_weight
    steps = v.shape[1]
    literal = torch.zeros_like(v)
    for t in range(steps):
        product = torch.eye(16).expand(4, 16, 16)
        for s in range(t, steps):
            if s > t:
                product = product @ jacobians[:, s]
            literal[:, t] += (product.mT @ v[:, s, :, None])[..., 0]
    assert relative_errors(printed, literal).max() < EXACT
    reference, _ = module_backprop(rnn, readout, x, y, h0, "all")
    errors = relative_errors(printed, reference)
    # with at most one Jacobian in each product (t = T-1, T) the order cannot matter: exact there
    assert errors[:, -2:].max() < EXACT
    # elsewhere the order matters: several percent to tens of percent (spec §3.3 measured 2-60 %)
    assert errors[:, :-2].median() > 0.02
    assert errors[:, :-2].max() > 0.1


def test_both_forms_exact_when_jacobians_commute():
    # phi = identity and zero input: J_t = V for all t, so every product commutes
    torch.manual_seed(3)
    n, steps, batch, classes = 6, 12, 3, 4
    v_matrix = torch.randn(n, n)
    v_matrix *= 0.9 / torch.linalg.eigvals(v_matrix).abs().max()
    net = lg.VanillaRNN(input_weight=torch.randn(n, 1), recurrent_weight=v_matrix, bias=None,
                        readout_weight=torch.randn(classes, n), readout_bias=torch.randn(classes), nonlinearity="identity")
    x, h0 = torch.zeros(batch, steps, 1), torch.randn(batch, n)
    y = torch.tensor([0, 3, 1])
    trajectory = lg.rnn_forward(net, x, h0)
    assert torch.allclose(trajectory.states[:, -1], h0 @ torch.linalg.matrix_power(v_matrix, steps).mT)
    output_grads = lg.cross_entropy_output_gradients(trajectory.outputs, y, "all")
    wg = output_grads @ net.readout_weight
    exact = torch.stack([sum(wg[:, s] @ torch.linalg.matrix_power(v_matrix, s - t) for s in range(t, steps))
                         for t in range(steps)], dim=1)  # sum_s (V^T)^{s-t} W^T g_s
    jacobians = lg.step_jacobians(net, trajectory)
    corrected = lg.hidden_gradients_qr(*qr_recursion(jacobians), net.readout_weight, output_grads)
    printed = lg.hidden_gradients_printed(*qr_recursion(jacobians, transposed=True), net.readout_weight, output_grads)
    assert relative_errors(corrected, exact).max() < EXACT
    assert relative_errors(printed, exact).max() < EXACT


def test_identity_refuses_a_non_square_q():
    _, _, net, _, _, _, trajectory, output_grads = setup(5, steps=4, batch=2)
    q, r = qr_recursion(lg.step_jacobians(net, trajectory))
    with pytest.raises(ValueError, match="square Q"):
        lg.hidden_gradients_qr(q[..., :3], r[..., :3, :3], net.readout_weight, output_grads)
    with pytest.raises(ValueError, match="square Q"):
        lg.hidden_gradients_printed(q[..., :3], r[..., :3, :3], net.readout_weight, output_grads)
    with pytest.raises(ValueError, match="full R matrices"):
        lg.hidden_gradients_qr(q, torch.diagonal(r, dim1=-2, dim2=-1), net.readout_weight, output_grads)
    with pytest.raises(ValueError, match="output_grads"):
        lg.hidden_gradients_qr(q, r, net.readout_weight, output_grads[:, :-1])
    with pytest.raises(ValueError, match="loss_at"):
        lg.cross_entropy_output_gradients(trajectory.outputs, torch.zeros(2, dtype=torch.long), "first")


# ---------------------------------------------------------------------------------------------
# Delta V_t, its SVD, the participation ratio


def per_sample_loop(module_forward, weight, x, y, h0):
    """Delta V_t by one backward pass per sequence and step: (T, B, N, N)."""
    out = torch.zeros(x.shape[1], x.shape[0], *weight.shape)
    for i in range(x.shape[0]):
        for t in range(1, x.shape[1] + 1):
            logits = module_forward(x[i : i + 1, :t], h0[i : i + 1])
            loss = nn.functional.cross_entropy(logits, y[i : i + 1])
            out[t - 1, i] = torch.autograd.grad(loss, weight)[0]
    return out


def test_per_step_gradients_equal_a_per_sample_loop():
    rnn, readout = random_network(6, batch_first=False, radius=1.5)  # time-first module: x is still given batch first
    net = lg.vanilla_rnn(rnn, readout)
    generator = torch.Generator().manual_seed(2)
    x, h0 = torch.randn(3, 5, 3, generator=generator), torch.randn(3, 6, generator=generator)
    y = torch.tensor([4, 0, 9])

    def forward(x_i, h0_i):
        out, _ = rnn(x_i.transpose(0, 1), h0_i[None])
        return readout(out[-1])

    ours = lg.per_step_weight_gradients(net, x, y, h0)
    assert ours.shape == (5, 3, 6, 6)
    reference = per_sample_loop(forward, rnn.weight_hh_l0, x, y, h0)
    assert ((ours - reference).norm() / reference.norm()) < EXACT
    assert torch.allclose(lg.per_step_weight_gradients(net, x, y, h0, chunk_size=2), ours, rtol=0, atol=1e-15)


def test_per_step_gradients_of_a_task_model_ignore_dropout():
    model = build_model("rnn", 4, 8, 10, seed=5, dropout=0.5).double()
    net = lg.vanilla_rnn(model)
    generator = torch.Generator().manual_seed(3)
    x, h0, y = torch.randn(2, 4, 4, generator=generator), torch.randn(2, 8, generator=generator), torch.tensor([1, 7])
    model.eval()  # the reference in evaluation mode: what the spec's reading asks for

    def forward(x_i, h0_i):
        out, _ = model.core(x_i, h0_i[None])
        return model.readout(model.dropout(out[:, -1]))

    reference = per_sample_loop(forward, model.core.weight_hh_l0, x, y, h0)
    assert ((lg.per_step_weight_gradients(net, x, y, h0) - reference).norm() / reference.norm()) < EXACT


def test_svd_layout_and_participation_ratio_of_delta_v():
    _, _, net, x, y, h0, _, _ = setup(6, steps=4, batch=2)
    delta_v = lg.per_step_weight_gradients(net, x, y, h0)
    svd = lg.gradient_svd(delta_v)
    assert torch.allclose(svd.u @ torch.diag_embed(svd.s) @ svd.vh, delta_v, atol=1e-14)
    # the right singular vectors are rows of vh: Delta V e_j = s_j u_j
    assert torch.allclose(delta_v @ svd.vh[..., 0, :, None], svd.s[..., 0, None, None] * svd.u[..., :, :1], atol=1e-14)
    # Delta V_1 = diag(phi'(a_1)) grad_{h_1} CE_1 h_0^T has rank 1
    assert torch.allclose(svd.participation_ratio[0], torch.ones(2), atol=1e-12)
    assert bool(((svd.participation_ratio >= 1 / 6 - 1e-12) & (svd.participation_ratio <= 1 + 1e-12)).all())


def test_participation_ratio_known_answers():
    u, v = torch.randn(7, 1), torch.randn(7, 1)
    assert lg.participation_ratio(torch.linalg.svdvals(u @ v.mT)).item() == pytest.approx(1.0, abs=1e-12)
    for n in (1, 2, 10):
        assert lg.participation_ratio(torch.linalg.svdvals(torch.eye(n))).item() == pytest.approx(1 / n, abs=1e-15)
    orthogonal, _ = torch.linalg.qr(torch.randn(5, 5))
    assert lg.participation_ratio(torch.linalg.svdvals(orthogonal)).item() == pytest.approx(0.2, abs=1e-12)
    assert lg.participation_ratio(torch.tensor([3.0, 1.0])).item() == pytest.approx(10 / 16)
    assert torch.isnan(lg.participation_ratio(torch.zeros(3)))
    with pytest.raises(ValueError, match="non-negative"):
        lg.participation_ratio(torch.tensor([1.0, -1.0]))


# ---------------------------------------------------------------------------------------------
# alignment (Eq. 4.15) and its statistics


def test_alignment_of_known_vectors():
    q, _ = torch.linalg.qr(torch.randn(2, 3, 5, 5))  # (T, batch, N, k) columns
    assert torch.allclose(lg.alignment(q, q.mT), torch.eye(5).expand(2, 3, 5, 5), atol=1e-14)  # e_j = q_j
    swapped = q.mT[..., [1, 0, 2, 3, 4], :]
    assert torch.allclose(lg.alignment(q, swapped)[..., 0, 1], torch.ones(2, 3))
    between = (q[..., :, 0] - q[..., :, 2]) / 2**0.5  # 45 degrees from q_1, 135 from q_3
    a = lg.alignment(q, between[..., None, :])
    assert torch.allclose(a[..., :, 0], torch.tensor([2**-0.5, 0, -(2**-0.5), 0, 0]).expand(2, 3, 5), atol=1e-14)
    with pytest.raises(ValueError, match="transpose"):
        lg.alignment(q, q.mT.transpose(0, 1))


def test_alignment_statistics_pick_the_right_axes():
    generator = torch.Generator().manual_seed(4)
    a = torch.randn(3, 4, 12, 12, generator=generator) / 4  # (T, batch, k, S)
    q_index, sv_index = torch.tensor([0, 5]), torch.tensor([1, 2, 3])
    dist = lg.alignment_distribution(a, q_index, sv_index, bins=8)
    chosen = a.numpy()[:, :, [0, 5]][:, :, :, [1, 2, 3]]
    assert dist.std == pytest.approx(chosen.std(ddof=1))
    per_step = [chosen[t, :, :, j].std(ddof=1) for t in range(3) for j in range(3)]  # over sequences x Q vectors
    assert dist.mean_of_stds == pytest.approx(np.mean(per_step))
    assert dist.counts.shape == (3, 8)
    expected = [np.histogram(np.clip(chosen[..., j], -1, 1), bins=8, range=(-1, 1))[0] for j in range(3)]
    np.testing.assert_array_equal(dist.counts.numpy(), np.stack(expected))
    std_map = lg.alignment_std_map(a, sv_index, random_index=torch.tensor([4, 6]))
    assert std_map.std.shape == (3, 12)
    assert std_map.std[2, 7].item() == pytest.approx(a.numpy()[2, :, 7][:, [1, 2, 3]].std(ddof=1))
    assert std_map.baseline == pytest.approx(a.numpy()[:, :, [4, 6]][..., [1, 2, 3]].std(ddof=1))


def test_index_sets():
    sets = lg.q_index_sets(64, seed=7)
    assert sets.first.tolist() == list(range(10)) and sets.last.tolist() == list(range(54, 64))
    assert len(set(sets.random.tolist())) == 10 and sets.random.min() >= 10 and sets.random.max() <= 53
    assert torch.equal(sets.random, lg.q_index_sets(64, seed=7).random)
    assert not torch.equal(sets.random, lg.q_index_sets(64, seed=8).random)
    original = lg.q_index_sets(24, exclude=5, seed=0)  # the original code's range 5 ... N-6
    assert original.random.min() >= 5 and original.random.max() <= 18
    with pytest.raises(ValueError, match="cannot draw"):
        lg.q_index_sets(25)  # 10 first + 10 last leave 5 indices for 10 random ones
    assert lg.singular_vector_index(8, 5, "last").tolist() == [3, 4, 5, 6, 7]


# ---------------------------------------------------------------------------------------------
# R-ordered positions and the flip protocol


def test_r_ordered_positions_map_steps_back_through_the_permutation():
    permutation = torch.tensor([2, 0, 3, 1])  # step t reads position permutation[t]
    log_r = torch.tensor([[[0.1, 0.3], [0.9, -0.1], [-0.5, 0.0], [0.4, 0.4]]])  # (1, T=4, k=2)
    one = lg.r_ordered_positions(log_r, 1, permutation)
    # position 2 read at step 0 (0.1), 0 at step 1 (0.9), 3 at step 2 (-0.5), 1 at step 3 (0.4)
    assert one.position_scores.tolist() == [[0.9, 0.4, 0.1, -0.5]]
    assert one.order.tolist() == [[0, 1, 2, 3]]
    two = lg.r_ordered_positions(log_r, 2, permutation)
    assert torch.allclose(two.position_scores, torch.tensor([[0.4, 0.4, 0.2, -0.25]]))
    assert two.order.tolist() == [[0, 1, 2, 3]]  # tie between positions 0 and 1 kept in position order
    assert torch.equal(two.sorted_scores, two.position_scores.sort(descending=True).values)
    identity = lg.r_ordered_positions(log_r, 1)
    assert identity.order.tolist() == [[1, 3, 0, 2]]
    for bad in ([0, 1, 1, 2], [0, 1, 2], [0.0, 1.0, 2.0, 3.0], [1, 2, 3, 4]):
        with pytest.raises(ValueError, match="permutation"):
            lg.r_ordered_positions(log_r, 1, torch.tensor(bad))
    with pytest.raises(ValueError, match="n must be"):
        lg.r_ordered_positions(log_r, 3)


def test_flip_images_up_and_down():
    images = torch.tensor([[0.0, 0.5, 0.0005, 1.0], [0.2, 0.0, 0.0, 0.9]])
    flipped, up = lg.flip_images(images, torch.tensor([[0, 1, 2], [3, 1, 0]]))
    assert flipped.tolist() == [[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]]
    assert up.tolist() == [[True, False, True], [False, True, False]]
    shared, _ = lg.flip_images(images, torch.tensor([3]))
    assert shared[:, 3].tolist() == [0.0, 0.0]


def decaying_sum_network():
    """N = 1, identity phi, V = 1/2, U = 1: h_T = sum_t 2^-(T-1-t) x_t; logits (h, -h)."""
    return lg.VanillaRNN(input_weight=torch.ones(1, 1), recurrent_weight=torch.full((1, 1), 0.5), bias=None,
                         readout_weight=torch.tensor([[1.0], [-1.0]]), readout_bias=None, nonlinearity="identity")


def closed_form_loss(images, labels, permutation):
    """CE of logits (h, -h): softplus(-2h) for label 0, softplus(2h) for label 1."""
    steps = images.shape[1]
    weights = 0.5 ** (steps - 1 - torch.argsort(permutation)).double()  # weight of each position
    h = images @ weights
    return nn.functional.softplus(torch.where(labels == 0, -2 * h, 2 * h))


def test_flip_experiment_on_a_hand_made_network():
    net = decaying_sum_network()
    images = torch.tensor([[0.0, 0.6, 0.0005, 1.0], [0.2, 0.0, 0.0, 0.9]])
    labels = torch.tensor([0, 1])
    permutation = torch.tensor([1, 3, 0, 2])
    order = torch.tensor([[3, 1, 0, 2], [0, 2, 1, 3]])
    result = lg.flip_experiment(net, images, labels, order, [1, 2, 4], permutation=permutation, draws=3, seed=11)
    base = closed_form_loss(images, labels, permutation)
    assert torch.allclose(result.base_loss, base, atol=1e-15)
    # R-guided, k = 2: image 0 loses positions 3 and 1 (both down); image 1 flips 0 down and 2 up
    k2 = torch.tensor([[0.0, 0.0, 0.0005, 0.0], [0.0, 0.0, 1.0, 0.9]])
    assert torch.allclose(result.r_increase[1], closed_form_loss(k2, labels, permutation) - base, atol=1e-15)
    k4 = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])  # every pixel flipped
    assert torch.allclose(result.r_increase[2], closed_form_loss(k4, labels, permutation) - base, atol=1e-15)
    assert result.up_flips.tolist() == [[0, 0], [0, 1], [2, 2]]
    assert result.down_flips.tolist() == [[1, 1], [2, 1], [2, 2]]
    # random draws: k distinct positions, one set shared by both images, losses from the closed form
    for i, k in enumerate([1, 2, 4]):
        sets = result.random_positions[i]
        assert sets.shape == (3, k) and all(len(set(row.tolist())) == k for row in sets)
        for j in range(3):
            flipped, _ = lg.flip_images(images, sets[j])
            expected = closed_form_loss(flipped, labels, permutation) - base
            assert torch.allclose(result.random_increase[i, j], expected, atol=1e-15)
    again = lg.flip_experiment(net, images, labels, order, [1, 2, 4], permutation=permutation, draws=3, seed=11)
    assert all(torch.equal(a, b) for a, b in zip(again.random_positions, result.random_positions))
    assert list(result.table()["k"]) == [1, 2, 4]


def test_flip_experiment_refuses_bad_input():
    net = decaying_sum_network()
    images, labels, order = torch.rand(2, 4), torch.tensor([0, 1]), torch.arange(4).expand(2, 4)
    with pytest.raises(ValueError, match="at most the number of positions"):
        lg.flip_experiment(net, images, labels, order, [1, 5])
    with pytest.raises(ValueError, match="ks"):
        lg.flip_experiment(net, images, labels, order, [0])
    with pytest.raises(ValueError, match="permutation"):
        lg.flip_experiment(net, images, labels, order, [1], permutation=torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        lg.flip_experiment(net, images * 3 - 1, labels, order, [1])
    with pytest.raises(ValueError, match="order"):
        lg.flip_experiment(net, images, labels, torch.zeros(2, 4, dtype=torch.long), [1])
    with pytest.raises(ValueError, match="labels"):
        lg.flip_experiment(net, images, torch.tensor([0, 2]), order, [1])


# ---------------------------------------------------------------------------------------------
# the test of Table 4.1

TABLE_4_1 = paper.TABLE_4_1  # k, mu_R - mu_rand, "Variance" (= sigma), p  (dissertation L1311-1321)


@pytest.mark.parametrize("k, delta, sigma, printed", TABLE_4_1)
def test_table_4_1_p_values_follow_from_its_delta_and_sigma(k, delta, sigma, printed):
    # Delta and sigma are printed to 3 decimals: p must be reachable within that rounding, and the
    # printed p is itself rounded to 3 decimals.
    half = 0.0005
    reachable = [lg.one_sided_p(delta + a, sigma + b) for a in (-half, half) for b in (-half, half)]
    assert min(reachable) - half <= printed <= max(reachable) + half


def test_table_4_1_first_row_differs_only_by_rounding():
    assert round(lg.one_sided_p(-0.028, 0.009), 3) == 0.999  # printed 0.998: inside the rounding box above
    assert lg.one_sided_p(1.050, 0.530) == pytest.approx(1 - NormalDist().cdf(1.050 / 0.530))
    assert (lg.one_sided_p(1.0, 0.0), lg.one_sided_p(-1.0, 0.0), lg.one_sided_p(0.0, 0.0)) == (0.0, 1.0, 0.5)


def test_flip_significance_known_answers():
    y_r = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    y_rand = np.array([[0.0, 0.0, 0.0, 0.0, 0.0], [0.5, 2.5, 3.0, 8.0, 9.0]])  # (draws, images)
    test = lg.flip_significance(torch.tensor(y_r), y_rand)
    delta = y_r.mean() - y_rand.mean()
    sigma = np.sqrt(y_r.var(ddof=1) / 5 + y_rand.var(ddof=1) / 10)
    assert test.delta == pytest.approx(delta) and test.standard_error == pytest.approx(sigma)
    assert test.p == pytest.approx(NormalDist().cdf(-delta / sigma))
    np.testing.assert_allclose(test.differences, [0.75, 0.75, 1.5, 0.0, 0.5])
    np.testing.assert_allclose(test.ranks, [1.0, 2.0, 1.5, 2.0, 2.0])  # 1 = above all random draws; ties share
    # 4 non-zero differences, all positive: exact one-sided p = 2^-4 (the zero is dropped)
    assert test.wilcoxon_p == pytest.approx(1 / 16)
    with pytest.raises(ValueError, match="same images"):
        lg.flip_significance(y_r, y_rand[:, :4])


# ---------------------------------------------------------------------------------------------
# the model and its bad inputs


def test_vanilla_rnn_is_a_snapshot_and_runs_like_the_module():
    rnn, readout = random_network(5, bias=True)
    net = lg.vanilla_rnn(rnn, readout)
    x = torch.randn(2, 6, 3)
    out, _ = rnn(x)
    assert torch.allclose(lg.rnn_forward(net, x).states, out, atol=1e-15)
    assert torch.allclose(lg.final_logits(net, x), readout(out[:, -1]), atol=1e-15)
    with torch.no_grad():
        rnn.weight_hh_l0.zero_()
    assert net.recurrent_weight.abs().sum() > 0


def test_unsupported_models_are_refused():
    with pytest.raises(TypeError, match="not supported"):
        lg.vanilla_rnn(nn.LSTM(3, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="num_layers"):
        lg.vanilla_rnn(nn.RNN(3, 4, num_layers=2), nn.Linear(4, 2))
    with pytest.raises(TypeError, match="readout"):
        lg.vanilla_rnn(nn.RNN(3, 4))
    with pytest.raises(ValueError, match="in_features"):
        lg.vanilla_rnn(nn.RNN(3, 4), nn.Linear(5, 2))
    with pytest.raises(TypeError, match="arch='lstm'"):
        lg.vanilla_rnn(build_model("lstm", 3, 4, 2))
    with pytest.raises(TypeError, match="VanillaRNN"):
        lg.per_step_weight_gradients(nn.RNN(3, 4), torch.randn(1, 2, 3), torch.tensor([0]))
    net = lg.vanilla_rnn(nn.RNN(3, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"\(batch, time, 3\)"):
        lg.rnn_forward(net, torch.randn(2, 3))
    with pytest.raises(TypeError, match="core_inputs"):
        lg.rnn_forward(net, torch.zeros(2, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="targets"):
        lg.autograd_gradients(net, torch.randn(2, 3, 3), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="nonlinearity"):
        lg.VanillaRNN(torch.ones(1, 1), torch.ones(1, 1), None, torch.ones(1, 1), None, nonlinearity="sigmoid")
