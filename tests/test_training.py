"""Models and training loops: every architecture learns, FORCE learns the four-sine target."""

import numpy as np
import pytest
import torch

from lyapbook.rnn import Rank1Reservoir
from lyapbook.tasks import char_data, digits_data, four_sine, lorenz96_data
from lyapbook.tasks.models import ARCHITECTURES, build_model
from lyapbook.tasks.training import force_train, spectrum_callback, train


def subset(split, n):
    return type(split)(split.x[:n], split.y[:n])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_learns_row_wise_digits(arch):
    train_split, val_split, _ = digits_data("rows")
    model = build_model(arch, 8, 32, 10, seed=0)
    history = train(model, subset(train_split, 256), subset(train_split, 256), epochs=3, lr=1e-2, batch_size=32)
    assert history[-1].val_loss < history[0].val_loss
    assert len(history) == 4 and history[0].train_loss is None
    assert history[0].seconds is None and all(r.seconds > 0 for r in history[1:])


def test_character_and_signal_models_learn():
    chars = char_data(seq_len=30, max_chars=31 * 300)
    model = build_model("lstm", 16, 32, len(chars.vocabulary), vocabulary=len(chars.vocabulary), output="all",
                        loss="cross_entropy", dropout=0.1, seed=0)
    history = train(model, chars.train, chars.validation, epochs=2, lr=1e-2, batch_size=32)
    assert history[-1].val_loss < history[0].val_loss and 0.0 <= history[-1].val_accuracy <= 1.0
    # The loss is per predicted character: an untrained model is near log(vocabulary).
    assert abs(history[0].val_loss - np.log(len(chars.vocabulary))) < 0.5
    train_split, val_split, _ = lorenz96_data(sequences=40, seq_len=20)
    model = build_model("gru", 20, 32, 20, output="all", seed=0)
    history = train(model, train_split, val_split, epochs=3, lr=1e-2, batch_size=8)
    assert history[-1].val_loss < history[0].val_loss and history[-1].val_accuracy is None


def test_spectrum_callback_records_spectra_at_chosen_epochs():
    train_split, val_split, test_split = digits_data("rows")
    model = build_model("gru", 8, 16, 10, init_p=0.3, seed=1)
    callback = spectrum_callback(test_split.x[:5], warmup=2, k=4)
    history = train(model, subset(train_split, 64), subset(val_split, 64), epochs=2, callbacks={0: callback, 2: callback})
    assert history[0].extras["spectrum"].shape == (4,) and "spectrum" not in history[1].extras
    assert history[2].extras["spectrum_seconds"] > 0
    assert not torch.equal(history[0].extras["spectrum"], history[2].extras["spectrum"])
    assert next(model.parameters()).dtype == torch.float32


def test_uniform_initialisation_and_bad_arguments():
    model = build_model("lstm", 4, 8, 2, init_p=0.05)
    assert all(p.abs().max() <= 0.05 for p in model.parameters())
    with pytest.raises(ValueError, match="arch: unknown 'transformer'"):
        build_model("transformer", 4, 8, 2)
    with pytest.raises(ValueError, match="loss must be 'cross_entropy' or 'mse'"):
        build_model("lstm", 4, 8, 2, loss="hinge")
    with pytest.raises(ValueError, match="sizes must be positive"):
        build_model("gru", 4, 0, 2)
    with pytest.raises(ValueError, match="init_p must be positive"):
        build_model("gru", 4, 8, 2, init_p=0.0)
    train_split = digits_data("rows")[0]
    with pytest.raises(ValueError, match="optimizer: unknown 'lbfgs'"):
        train(build_model("gru", 8, 8, 10), train_split, train_split, epochs=1, optimizer="lbfgs")


def test_force_learns_the_four_sine_target_at_g_1_5():
    _, target, _ = four_sine(0, points=1200 * 6)
    reservoir = Rank1Reservoir(300, g=1.5).double()
    result = force_train(reservoir, target, val_points=1200)
    # Threshold: a validation MAE under 5% of the target's mean absolute value (2.74 here).
    assert result["val_mae"] < 0.05 * target[-1200:].abs().mean()
    assert reservoir.w_out.abs().sum() > 0


def test_spectrum_callback_keeps_the_model_precision():
    model = build_model("lstm", 8, 8, 10, seed=2).double()
    x = digits_data("rows")[2].x[:3].double()
    spectrum = spectrum_callback(x, k=2)(model, 0)["spectrum"]
    assert spectrum.shape == (2,) and next(model.parameters()).dtype == torch.float64


def test_learning_rate_decays_only_after_the_given_epoch():
    train_split = subset(digits_data("rows")[0], 32)
    history = train(build_model("gru", 8, 4, 10), train_split, train_split, epochs=4, lr=0.1, lr_decay=0.5, decay_after=2)
    # Epochs 1-2 train at the initial rate, epoch 3 too (it is the first "additional" epoch), then x0.5.
    assert history[0].lr is None and [r.lr for r in history[1:]] == pytest.approx([0.1, 0.1, 0.1, 0.05])


def test_checkpoints_and_fractions_of_training(tmp_path):
    from lyapbook.tasks.training import epochs_at_fractions

    assert epochs_at_fractions(15, (0.0, 0.1, 0.2, 0.5)) == (0, 2, 3, 8)
    with pytest.raises(ValueError, match="fractions must lie in"):
        epochs_at_fractions(10, (1.5,))
    train_split = subset(digits_data("rows")[0], 32)
    model = build_model("lstm", 8, 4, 10)
    train(model, train_split, train_split, epochs=2, checkpoints={0: tmp_path / "e0.pt", 2: tmp_path / "e2.pt"})
    first, last = torch.load(tmp_path / "e0.pt"), torch.load(tmp_path / "e2.pt")
    assert torch.equal(last["readout.weight"], model.state_dict()["readout.weight"])
    assert not torch.equal(first["readout.weight"], last["readout.weight"])


def test_early_stopping_ends_training_after_patience_epochs_without_improvement():
    from lyapbook.tasks.training import EarlyStopping

    train_split, val_split, _ = digits_data("rows")
    # lr 0.5 overshoots on 48 images: the validation loss stops improving within a few epochs.
    history = train(build_model("gru", 8, 6, 10, seed=0), subset(train_split, 48), subset(val_split, 48), epochs=30,
                    lr=0.5, batch_size=16, patience=2)
    losses = [r.val_loss for r in history]
    best = int(np.argmin(losses))
    assert len(history) - 1 < 30 and len(history) - 1 == best + 2
    assert all(loss >= losses[best] for loss in losses[best + 1 :])
    stopping = EarlyStopping(2, patience=1, min_delta=0.1)
    assert stopping.update(0, torch.tensor([1.0, 1.0])).tolist() == [False, False]
    assert stopping.update(1, torch.tensor([0.95, 0.5])).tolist() == [True, False]  # 0.05 is no improvement by 0.1
    assert stopping.best_epoch.tolist() == [0, 1]
    assert stopping.update(2, torch.tensor([float("nan"), 0.45])).tolist() == [True, True]
    with pytest.raises(ValueError, match="patience must be a positive int"):
        EarlyStopping(1, patience=0)


def test_adagrad_is_offered_and_float64_models_take_float32_data():
    train_split = subset(digits_data("rows")[0], 64)
    model = build_model("asrnn", 8, 8, 10, init="asrnn_normal", init_p=4.0, seed=0, cell={"eps": 1.0, "gamma": 0.1}).double()
    assert model.core.eps == 1.0 and model.core.gamma == 0.1 and not model.core.V.bias.any()
    # The ASRNN grid's normal initialisation: recurrent std sigma / n, input std 1 / input size.
    assert abs(model.core.W.std().item() - 4.0 / 8) < 0.2 and abs(model.core.V.weight.std().item() - 1.0 / 8) < 0.05
    history = train(model, train_split, train_split, epochs=3, lr=0.1, optimizer="adagrad", batch_size=16)
    assert history[-1].val_loss < history[0].val_loss
    with pytest.raises(ValueError, match="cell options \\['tau'\\] do not exist for 'gru'"):
        build_model("gru", 8, 8, 10, cell={"tau": 1.0})
