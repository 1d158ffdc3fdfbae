"""Training autoencoders (Eq. 3.6), one at a time or many at once as one batched model.

A chapter fits many small autoencoders: every fold of a cross-validation, every seed, every task.
Each is tiny (a 128-long spectrum, 32 latents), so one fit is all per-operation overhead; a group
of E of them is trained as one model whose weights carry a leading dimension (E, ...), each step
one batched matrix product, each autoencoder on its own data (its own fold), with its own
standardisation, shuffling, dropout and Adam state (:class:`lyapbook.optim.BatchedOptimizer`).
Autoencoders share no parameter, so the summed loss of the group has, for each of them, the
gradient of its own loss: an autoencoder trained in a group follows the trajectory it follows
trained alone (:func:`fit_aelle` is a group of one), to floating-point rounding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from ..optim import BatchedOptimizer
from .model import AeEpoch, AeLLE, AeLLEFit, _check_pair, alpha_schedule, cpu_threads

__all__ = ["fit_aelle", "fit_aelle_group"]

# AeLLE's linear layers, in state-dict names, and the activation after each within the forward pass
_LAYERS = ("encoder.0", "encoder.3", "decoder.0", "decoder.3", "head")


def _seed_stream(seed: int, salt: int) -> torch.Generator:
    """A CPU generator for one use (salt) of one autoencoder's seed, independent of the others."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([int(seed), salt]).generate_state(1)[0]))


def _padded(arrays: Sequence[np.ndarray], device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(E, n_max, ...) zero-padded stack and the (E,) row counts."""
    counts = torch.tensor([len(a) for a in arrays])
    stacked = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(a) for a in arrays], batch_first=True)
    return stacked.to(device=device, dtype=dtype), counts


class _Group:
    """E autoencoders of one shape as stacked weights: W (E, in, out), b (E, 1, out) per layer."""

    def __init__(self, models: Sequence[AeLLE]):
        states = [m.state_dict() for m in models]
        self.config = models[0].config
        self.params = {}
        for layer in _LAYERS:
            self.params[f"{layer}.W"] = torch.stack([s[f"{layer}.weight"].t() for s in states]).contiguous()
            self.params[f"{layer}.b"] = torch.stack([s[f"{layer}.bias"].unsqueeze(0) for s in states]).contiguous()
        for p in self.params.values():
            p.requires_grad_(True)

    def _linear(self, layer: str, x: torch.Tensor, params: dict | None = None) -> torch.Tensor:
        p = self.params if params is None else params
        return torch.baddbmm(p[f"{layer}.b"], x, p[f"{layer}.W"])

    def forward(self, z: torch.Tensor, masks: torch.Tensor | None = None):
        """(Ẑ (E, B, L), T̂ (E, B), latent (E, B, m)) for z (E, B, L); ``masks`` (E, B, 2, H) scale the
        two hidden layers (dropout, already divided by 1 − p), None in evaluation mode."""
        hidden = torch.tanh(self._linear("encoder.0", z))
        if masks is not None:
            hidden = hidden * masks[:, :, 0]
        latent = self._linear("encoder.3", hidden)
        back = torch.tanh(self._linear("decoder.0", latent))
        if masks is not None:
            back = back * masks[:, :, 1]
        return self._linear("decoder.3", back), self._linear("head", latent).squeeze(-1), latent

    def state(self, k: int, params: dict, mean: float, std: float) -> dict:
        """Member k's parameters ``params`` as an AeLLE state dict (detached copies, CPU)."""
        state = {}
        for layer in _LAYERS:
            state[f"{layer}.weight"] = params[f"{layer}.W"][k].detach().t().clone().cpu()
            state[f"{layer}.bias"] = params[f"{layer}.b"][k, 0].detach().clone().cpu()
        dtype = state["head.weight"].dtype
        state["target_mean"] = torch.tensor(mean, dtype=dtype)
        state["target_std"] = torch.tensor(std, dtype=dtype)
        return state


def _row_losses(recon, z, predicted, t, reconstruction: str, prediction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row reconstruction (mean over the spectrum) and prediction terms of Eq. 3.6, (E, B) each."""
    rec = (recon - z).abs().mean(-1) if reconstruction == "l1" else ((recon - z) ** 2).mean(-1)
    pred = (predicted - t) ** 2 if prediction == "l2" else (predicted - t).abs()
    return rec, pred


def _check_groups(train, val, seeds) -> tuple[list, list | None]:
    if not train:
        raise ValueError("train: give at least one (spectra, targets) pair")
    if len(seeds) != len(train):
        raise ValueError(f"seeds: one per autoencoder, got {len(seeds)} seeds for {len(train)} training sets")
    checked = []
    for k, pair in enumerate(train):
        if len(pair) != 2:
            raise ValueError(f"train[{k}]: expected a (spectra, targets) pair")
        z, t = _check_pair(*pair, (f"train[{k}] spectra", f"train[{k}] targets"), checked[0][0].shape[1] if checked else None)
        if z.shape[0] < 2:
            raise ValueError(f"train[{k}] spectra: need at least 2 training spectra, got {z.shape[0]}")
        if not t.std() > 0:
            raise ValueError(f"train[{k}] targets: all {len(t)} losses are equal ({t[0]}), so there is nothing to predict")
        checked.append((z, t))
    if val is None:
        return checked, None
    if len(val) != len(train):
        raise ValueError(f"val: one (spectra, targets) pair per training set, got {len(val)} for {len(train)}")
    width = checked[0][0].shape[1]
    return checked, [_check_pair(*pair, (f"val[{k}] spectra", f"val[{k}] targets"), width) for k, pair in enumerate(val)]


def fit_aelle_group(train: Sequence[tuple], val: Sequence[tuple] | None = None, *, seeds: Sequence[int],
                    latent: int = 32, hidden: int | None = None, dropout: float = 0.1, epochs_per_stage: int = 250,
                    alpha0: float = 1.0, alpha_ratios: Sequence[float] = (1.0, 1.0, 1.5, 2.0), lr: float = 1e-4,
                    batch_size: int = 128, reconstruction: str = "l1", prediction: str = "l2",
                    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, progress: bool = True,
                    num_threads: int | None = 1) -> list[AeLLEFit]:
    """Train E autoencoders at once: autoencoder k on ``train[k]`` = (spectra (n_k, L), losses (n_k,)),
    validated on ``val[k]`` (or none when ``val`` is None), seeded by ``seeds[k]``.

    Each follows :func:`fit_aelle` exactly (same settings for all): Adam (``lr``), shuffled
    mini-batches of ``batch_size`` of its own rows, one stage of ``epochs_per_stage`` epochs per α
    of :func:`alpha_schedule`, targets standardised with its own training mean and (population)
    deviation, the state of lowest validation prediction loss kept as a copy. Autoencoders with
    fewer rows have fewer batches per epoch and are idle (not updated) meanwhile. Returns one
    :class:`AeLLEFit` per autoencoder, in order; ``seconds`` is the group's wall time.
    """
    data, val_data = _check_groups(list(train), None if val is None else list(val), list(seeds))
    if reconstruction not in ("l1", "l2") or prediction not in ("l1", "l2"):
        raise ValueError(f"reconstruction and prediction: each 'l1' or 'l2', got {reconstruction!r}, {prediction!r}")
    for name, value in (("epochs_per_stage", epochs_per_stage), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: must be a positive integer, got {value!r}")
    alphas = alpha_schedule(alpha0, alpha_ratios)
    device, count, width = torch.device(device), len(data), data[0][0].shape[1]
    means = [float(t.mean()) for _, t in data]
    stds = [float(t.std()) for _, t in data]
    start = time.perf_counter()
    cuda = [device.index or 0] if device.type == "cuda" else []
    models = []
    with torch.random.fork_rng(devices=cuda):
        for seed in seeds:  # each initialised as AeLLE(...) right after torch.manual_seed(seed)
            torch.manual_seed(int(seed))
            models.append(AeLLE(width, latent=latent, hidden=hidden, dropout=dropout).to(dtype=dtype))
    config = models[0].config
    with cpu_threads(num_threads):
        group = _Group([m.to(device) for m in models])
        z, n_rows = _padded([z for z, _ in data], device, dtype)
        t, _ = _padded([(t - m) / s for (_, t), m, s in zip(data, means, stds)], device, dtype)
        if val_data is not None:
            zv, n_val = _padded([z for z, _ in val_data], device, dtype)
            tv, _ = _padded([(t - m) / s for (_, t), m, s in zip(val_data, means, stds)], device, dtype)
            val_valid = (torch.arange(zv.shape[1]) < n_val[:, None]).to(device=device, dtype=dtype)
        optimizer = BatchedOptimizer("adam", group.params, torch.full((count,), lr, dtype=dtype, device=device))
        order_streams = [torch.Generator().manual_seed(int(s)) for s in seeds]
        dropout_streams = [_seed_stream(s, 1) for s in seeds]
        width_hidden, keep = config["hidden"], 1.0 - config["dropout"]
        n_batches = int((n_rows.max() + batch_size - 1) // batch_size)
        rows_e = torch.arange(count, device=device)[:, None]
        best = {k: p.detach().clone() for k, p in group.params.items()}
        best_loss = torch.full((count,), float("inf"), dtype=dtype, device=device)
        best_epoch = torch.zeros(count, dtype=torch.long, device=device)
        records = []  # per epoch: (E, 4) train rec, train pred, val rec, val pred
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(alphas) * epochs_per_stage, desc=f"AeLLE x{count}", unit="epoch", mininterval=1.0)
        epoch = 0
        for alpha in alphas:
            for _ in range(epochs_per_stage):
                epoch += 1
                order = torch.nn.utils.rnn.pad_sequence(
                    [torch.randperm(int(n), generator=g) for n, g in zip(n_rows, order_streams)], batch_first=True)
                masks = None
                if config["dropout"] > 0:  # each autoencoder's masks for the epoch, in its own batch order
                    draws = [(torch.rand(int(n), 2, width_hidden, generator=g) < keep) for n, g in zip(n_rows, dropout_streams)]
                    masks = torch.nn.utils.rnn.pad_sequence(draws, batch_first=True).to(device=device, dtype=dtype) / keep
                order = order.to(device)
                totals = torch.zeros(count, 2, dtype=dtype, device=device)
                for j in range(n_batches):
                    positions = torch.arange(j * batch_size, min((j + 1) * batch_size, order.shape[1]))
                    valid = (positions < n_rows[:, None]).to(device=device, dtype=dtype)  # (E, B)
                    rows = order[:, positions.to(device)]
                    batch_masks = None if masks is None else masks[:, positions.to(device)]
                    zb = z[rows_e, rows]
                    recon, predicted, _ = group.forward(zb, batch_masks)
                    rec, pred = _row_losses(recon, zb, predicted, t[rows_e, rows], reconstruction, prediction)
                    sizes = valid.sum(1)
                    active = sizes > 0
                    rec_mean = (rec * valid).sum(1) / sizes.clamp_min(1)
                    pred_mean = (pred * valid).sum(1) / sizes.clamp_min(1)
                    for p in group.params.values():
                        p.grad = None
                    ((rec_mean + alpha * pred_mean) * active).sum().backward()
                    optimizer.step(active)
                    totals += torch.stack([rec_mean, pred_mean], 1).detach() * sizes[:, None]
                train_means = totals / n_rows.to(device=device, dtype=dtype)[:, None]
                if val_data is not None:
                    with torch.no_grad():
                        recon, predicted, _ = group.forward(zv)
                        rec, pred = _row_losses(recon, zv, predicted, tv, reconstruction, prediction)
                        sizes = val_valid.sum(1)
                        val_means = torch.stack([(rec * val_valid).sum(1), (pred * val_valid).sum(1)], 1) / sizes[:, None]
                        improved = val_means[:, 1] < best_loss
                        best_loss = torch.where(improved, val_means[:, 1], best_loss)
                        best_epoch = torch.where(improved, torch.full_like(best_epoch, epoch), best_epoch)
                        for key, p in group.params.items():
                            best[key] = torch.where(improved.view((-1,) + (1,) * (p.ndim - 1)), p.detach(), best[key])
                else:
                    val_means = torch.full((count, 2), float("nan"), dtype=dtype, device=device)
                records.append(torch.cat([train_means, val_means], 1).detach())
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
    history = torch.stack(records).to(torch.float64).cpu().numpy()  # (epochs, E, 4), one sync at the end
    final = {k: p.detach() for k, p in group.params.items()}
    seconds = time.perf_counter() - start
    stages = np.repeat(np.arange(1, len(alphas) + 1), epochs_per_stage)
    alpha_of = np.repeat(alphas, epochs_per_stage)
    fits = []
    for k in range(count):
        epochs = [AeEpoch(epoch=e + 1, stage=int(stages[e]), alpha=float(alpha_of[e]),
                          train_reconstruction=float(history[e, k, 0]), train_prediction=float(history[e, k, 1]),
                          val_reconstruction=None if val_data is None else float(history[e, k, 2]),
                          val_prediction=None if val_data is None else float(history[e, k, 3]))
                  for e in range(len(history))]
        final_state = group.state(k, final, means[k], stds[k])
        if val_data is None:
            kept, best_state = len(epochs), {key: v.clone() for key, v in final_state.items()}
        else:
            kept, best_state = int(best_epoch[k]), group.state(k, best, means[k], stds[k])
        model = AeLLE.from_state(config, best_state).to(device)
        settings = dict(latent=latent, hidden=hidden, dropout=dropout, epochs_per_stage=epochs_per_stage, alphas=alphas,
                        lr=lr, batch_size=batch_size, reconstruction=reconstruction, prediction=prediction,
                        seed=int(seeds[k]), device=str(device), dtype=str(dtype), n_train=len(data[k][1]),
                        n_val=0 if val_data is None else len(val_data[k][1]), group_size=count)
        fits.append(AeLLEFit(model=model, history=epochs, best_epoch=kept, best_state=best_state,
                             final_state=final_state, settings=settings, seconds=seconds))
    return fits


def fit_aelle(spectra, targets, val_spectra=None, val_targets=None, *, latent: int = 32, hidden: int | None = None,
              dropout: float = 0.1, epochs_per_stage: int = 250, alpha0: float = 1.0,
              alpha_ratios: Sequence[float] = (1.0, 1.0, 1.5, 2.0), lr: float = 1e-4, batch_size: int = 128,
              reconstruction: str = "l1", prediction: str = "l2", seed: int = 0, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32, progress: bool = True, num_threads: int | None = 1) -> AeLLEFit:
    """Train an :class:`AeLLE` on spectra (n, L) with losses ``targets`` (n,) (Eqs. 3.5–3.6).

    Adam (``lr``), shuffled mini-batches of ``batch_size`` (order drawn from ``seed``), one stage
    of ``epochs_per_stage`` epochs per α in :func:`alpha_schedule` (``alpha0``, ``alpha_ratios``).
    Targets are standardised with the training split's mean and (population) standard deviation;
    validation targets with the same numbers. After every epoch the validation prediction loss is
    computed; the state with the lowest one is kept as a deep copy and loaded at the end.
    Initialisation, dropout and shuffling follow ``seed`` alone: the global torch random state is
    left as it was. Progress is shown with tqdm unless ``progress=False``. ``num_threads`` sets the
    torch CPU threads for the fit only and restores them after (see :func:`cpu_threads`): the default
    1 is the fastest for these small models; None leaves torch's setting alone. Many autoencoders
    (folds, seeds) train faster together: :func:`fit_aelle_group`, of which this is a group of one.
    """
    has_val = val_spectra is not None or val_targets is not None
    if has_val and (val_spectra is None or val_targets is None):
        raise ValueError("val_spectra and val_targets: give both or neither")
    z, t = _check_pair(spectra, targets, ("spectra", "targets"), None)
    if has_val:
        _check_pair(val_spectra, val_targets, ("val_spectra", "val_targets"), z.shape[1])
    if z.shape[0] < 2:
        raise ValueError(f"spectra: need at least 2 training spectra, got {z.shape[0]}")
    if not t.std() > 0:
        raise ValueError(f"targets: all {len(t)} losses are equal ({t[0]}), so there is nothing to predict")
    return fit_aelle_group([(z, t)], [(val_spectra, val_targets)] if has_val else None, seeds=[seed], latent=latent,
                           hidden=hidden, dropout=dropout, epochs_per_stage=epochs_per_stage, alpha0=alpha0,
                           alpha_ratios=alpha_ratios, lr=lr, batch_size=batch_size, reconstruction=reconstruction,
                           prediction=prediction, device=device, dtype=dtype, progress=progress,
                           num_threads=num_threads)[0]
