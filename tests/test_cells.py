"""lyapbook's recurrent cells: analytic Jacobians against autograd, training, and spectra."""

import pytest
import torch

import lyapbook
from lyapbook.reference import autograd_jacobian, reference_step
from lyapbook.rnn import LEM, AntisymmetricRNN, CellSystem, CoRNN, LipschitzRNN, NoisyRNN, Rank1Reservoir, StackedCells

CELLS = {
    "asrnn": lambda: AntisymmetricRNN(3, 6, eps=0.5, gamma=0.1),
    "cornn": lambda: CoRNN(3, 6, dt=0.3),
    "lipschitz": lambda: LipschitzRNN(3, 6, dt=0.3),
    "noisy": lambda: NoisyRNN(3, 6, dt=0.3),
    "lem": lambda: LEM(3, 6, dt=0.7),
    "reservoir": lambda: Rank1Reservoir(6, g=1.5, input_size=3),
    "reservoir_autonomous": lambda: Rank1Reservoir(6, g=1.5),
}


def make(name):
    torch.manual_seed(0)
    cell = CELLS[name]().double().eval()
    if isinstance(cell, Rank1Reservoir):
        with torch.no_grad():
            cell.w_out.normal_(0.0, 0.3)  # a trained-looking readout, so the feedback is active
    return cell


def cell_autograd_jacobian(cell, state, x_t, n):
    """The reference Jacobian over the first n coordinates of the cell's state (n = its tangent size)."""
    return autograd_jacobian(cell, state, x_t, state="full" if n > cell.hidden_size else "hidden")


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("full_state", [False, True])
def test_cell_jacobian_matches_autograd(name, full_state):
    cell = make(name)
    state = torch.randn(4, cell.state_size, dtype=torch.float64)
    x_t = torch.randn(4, 3, dtype=torch.float64) if cell.input_size else None
    new_state, jac = cell.step_with_jacobian(state, x_t, full_state)
    assert torch.allclose(new_state, cell.cell_step(state, x_t), rtol=0, atol=1e-13)
    n = cell.tangent_size(full_state)
    expected = cell_autograd_jacobian(cell, state, x_t, n)
    assert jac.shape == expected.shape == (4, n, n)
    assert (jac - expected).abs().max() <= 1e-10 * expected.abs().max()


@pytest.mark.parametrize("name", [n for n in CELLS if n != "reservoir_autonomous"])
def test_cells_train_like_pytorch_rnns(name):
    torch.manual_seed(1)
    cell = CELLS[name]().train()
    head = torch.nn.Linear(cell.hidden_size, 1) if not isinstance(cell, Rank1Reservoir) else None
    x = torch.randn(8, 12, 3)
    target = x[:, :, :1].cumsum(dim=1) * 0.1
    parameters = list(cell.parameters()) + (list(head.parameters()) if head else [])
    optimizer = torch.optim.Adam(parameters, lr=1e-2)

    def loss_value():
        outputs, final = cell(x)
        assert outputs.shape[:2] == (8, 12) and final.shape == (8, cell.state_size)
        prediction = head(outputs) if head else outputs
        return torch.nn.functional.mse_loss(prediction, target)

    torch.manual_seed(2)
    first = loss_value()
    for _ in range(30):
        optimizer.zero_grad()
        loss = loss_value()
        loss.backward()
        optimizer.step()
    torch.manual_seed(2)
    assert loss_value().item() < first.item()


def test_noisy_rnn_is_noisy_only_in_training():
    cell = NoisyRNN(3, 5, dt=0.3, sigma_add=0.5).double()
    state, x_t = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
    cell.eval()
    assert torch.equal(cell.cell_step(state, x_t), cell.cell_step(state, x_t))
    cell.train()
    assert not torch.equal(cell.cell_step(state, x_t), cell.cell_step(state, x_t))
    assert torch.allclose(cell.step_with_jacobian(state, x_t)[0], LipschitzRNN.cell_step(cell, state, x_t))


@pytest.mark.parametrize("name", CELLS)
def test_sum_of_exponents_is_mean_log_det(name):
    cell = make(name)
    full_state = cell.aux_size > 0  # the whole state; without auxiliary state that is the hidden vector
    system = CellSystem(cell, full_state=full_state)
    steps = 60
    x = torch.randn(2, steps, 3, dtype=torch.float64) if cell.input_size else steps
    state = system.initial_state(2)
    result = lyapbook.lyapunov_spectrum(cell, x, state, state="full" if full_state else "hidden", warmup=5, t_on=3)
    log_det = []
    for t in range(steps):
        state, jac = system.step_with_jacobian(state, x[:, t] if cell.input_size else None)
        if t >= 5:
            log_det.append(torch.linalg.slogdet(jac).logabsdet)
    assert torch.allclose(result.per_sequence.sum(dim=1), torch.stack(log_det, 1).mean(1), atol=1e-9)


def test_antisymmetric_rnn_without_diffusion_is_near_neutral():
    # eps small, gamma = 0: J = I + eps diag(tanh') (W - W^T) has eigenvalues near the unit circle.
    torch.manual_seed(0)
    cell = AntisymmetricRNN(3, 16, eps=0.01, gamma=0.0).double()
    result = lyapbook.lyapunov_spectrum(cell, torch.randn(4, 300, 3, dtype=torch.float64))
    assert result.exponents.abs().max() < 5e-3


def test_reservoir_chaos_grows_with_gain():
    low = lyapbook.lyapunov_spectrum(Rank1Reservoir(200, g=0.5).double(), 1500, warmup=500, k=3)
    high = lyapbook.lyapunov_spectrum(Rank1Reservoir(200, g=1.8).double(), 1500, warmup=500, k=3)
    assert low.exponents[0] < 0 < high.exponents[0]


def test_dtype_mismatch_and_bad_input_are_rejected():
    with pytest.raises(TypeError, match="model's parameters are torch.float32"):
        lyapbook.lyapunov_spectrum(CoRNN(3, 4), torch.zeros(1, 5, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, time, 3\)"):
        lyapbook.lyapunov_spectrum(CoRNN(3, 4), torch.zeros(1, 5, 2))
    with pytest.raises(ValueError, match="hidden_size must be >= 1"):
        LEM(3, 0)


STACKABLE = {
    "asrnn": lambda m, n, bias: AntisymmetricRNN(m, n, eps=0.5, gamma=0.1, bias=bias),
    "cornn": lambda m, n, bias: CoRNN(m, n, dt=0.3, bias=bias),
    "lipschitz": lambda m, n, bias: LipschitzRNN(m, n, dt=0.3, bias=bias),
    "lem": lambda m, n, bias: LEM(m, n, dt=0.7, bias=bias),
}


STACK_CASES = [
    (name, layers, bias, full_state)
    for name in STACKABLE
    for layers in (1, 2, 3)
    for bias in (True, False)
    for full_state in ((False, True) if name in ("cornn", "lem") else (False,))  # full state = hidden otherwise
]


@pytest.mark.parametrize("name, layers, bias, full_state", STACK_CASES)
def test_stacked_cell_jacobians_match_autograd(name, layers, bias, full_state):
    torch.manual_seed(layers)
    sizes = [3, 5, 4, 6][: layers + 1]
    cells = [STACKABLE[name](sizes[k], sizes[k + 1], bias).double().eval() for k in range(layers)]
    stack = StackedCells(cells)
    system = CellSystem(stack, full_state=full_state)
    state = torch.randn(3, system.state_dim, dtype=torch.float64)
    x_t = torch.randn(3, 3, dtype=torch.float64)
    new_state, jac = system.step_with_jacobian(state, x_t)
    assert torch.allclose(new_state, reference_step(stack)[1](state, x_t), rtol=0, atol=1e-13)
    expected = autograd_jacobian(stack, state, x_t, state="full" if full_state else "hidden")
    assert jac.shape == expected.shape == (3, system.tangent_dim, system.tangent_dim)
    assert (jac - expected).abs().max() <= 1e-10 * expected.abs().max()


def test_stack_forward_matches_its_system_and_rejects_mismatched_layers():
    torch.manual_seed(0)
    stack = StackedCells([LEM(3, 5), CoRNN(5, 4)], output_size=2).double().eval()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    outputs, final = stack(x)
    assert outputs.shape == (2, 7, 2)
    result = lyapbook.lyapunov_spectrum(stack, x)
    assert torch.allclose(result.final_state, final, atol=1e-12) and result.exponents.shape == (18,)  # (y, z) x 2
    assert lyapbook.lyapunov_spectrum(stack, x, state="hidden").exponents.shape == (9,)
    with pytest.raises(ValueError, match=r"cells\[1\].input_size is 4 but cells\[0\].hidden_size is 5"):
        StackedCells([LEM(3, 5), CoRNN(4, 4)])
    with pytest.raises(TypeError, match="stack AntisymmetricRNN"):
        StackedCells([Rank1Reservoir(5)])
