"""The LE-spectrum autoencoder with a linear loss head (dissertation ch. 3, Eqs. 3.5–3.6; spec §1.3).

For a spectrum Z (length L) the encoder φ gives the latent L_Z = φ(Z) (32 numbers), the decoder ψ
the reconstruction Ẑ = ψ(φ(Z)) and the linear head ξ the predicted loss T̂ = ξ(φ(Z)) (Eq. 3.5).
Training minimises (Eq. 3.6, with the original code's choices)

    mean_i |Z_i − Ẑ_i|  +  α · mean (T − T̂)²,

the reconstruction term an L1 mean (``reconstruction="l2"`` gives the squared error Eq. 3.6
prints) and the prediction term an MSE (``prediction="l1"`` for Eq. 3.6's l = 1). α grows in four
stages, α₀·(1, 1, 1.5, 2) (the ratios of the original 200/200/300/400 schedule). Targets T are the
networks' losses *standardised* with the training split's mean and standard deviation, so one α₀
serves cross-entropies and MAEs alike; the model keeps that mean and deviation, and ``predict``
answers in loss units.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["AeLLE", "AeEpoch", "AeLLEFit", "alpha_schedule", "cpu_threads", "fit_aelle"]


def _tensor_like(values, reference: torch.Tensor, name: str, width: int) -> torch.Tensor:
    """``values`` (n, width) as a tensor on the device and dtype of ``reference``."""
    tensor = values.detach() if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values, dtype=np.float64))
    if tensor.ndim != 2 or tensor.shape[1] != width:
        raise ValueError(f"{name}: expected shape (n, {width}), got {tuple(tensor.shape)}")
    return tensor.to(device=reference.device, dtype=reference.dtype)


class AeLLE(nn.Module):
    """Encoder φ, decoder ψ and linear head ξ of Eq. 3.5.

    φ: Linear(L, H) → tanh → Dropout(p) → Linear(H, latent); ψ: Linear(latent, H) → tanh →
    Dropout(p) → Linear(H, L) (no dropout on the output); ξ: Linear(latent, 1), no activation.
    H defaults to L // 4. The buffers ``target_mean`` and ``target_std`` hold the standardisation of
    the training targets (set by :func:`fit_aelle`), so a saved state dict predicts in loss units.
    """

    def __init__(self, length: int, latent: int = 32, hidden: int | None = None, dropout: float = 0.1):
        super().__init__()
        for name, value in (("length", length), ("latent", latent), ("hidden", 1 if hidden is None else hidden)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        hidden = max(1, length // 4) if hidden is None else hidden
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout: must lie in [0, 1), got {dropout}")
        self.config = {"length": int(length), "latent": int(latent), "hidden": int(hidden), "dropout": float(dropout)}
        self.encoder = nn.Sequential(nn.Linear(length, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, length))
        self.head = nn.Linear(latent, 1)
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    @classmethod
    def from_state(cls, config: dict, state: dict) -> AeLLE:
        """Rebuild a fitted model from its ``config`` and a state dict (e.g. ``AeLLEFit.final_state``)."""
        model = cls(**config).to(dtype=state["head.weight"].dtype)
        model.load_state_dict(state)
        return model.eval()

    def forward(self, spectra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Ẑ (n, L), standardised T̂ (n,), latent (n, latent)) for spectra Z (n, L)."""
        latent = self.encoder(spectra)
        return self.decoder(latent), self.head(latent).squeeze(-1), latent

    # numpy helpers: evaluation mode, no gradients, float64 out ---------------------------------
    def _run(self, fn, values, name: str, width: int) -> np.ndarray:
        reference = next(self.parameters())
        inputs = _tensor_like(values, reference, name, width)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return fn(inputs).detach().cpu().to(torch.float64).numpy()
        finally:
            self.train(was_training)

    def encode(self, spectra) -> np.ndarray:
        """Latents φ(Z) (n, latent) of spectra (n, L)."""
        return self._run(self.encoder, spectra, "spectra", self.config["length"])

    def decode(self, latent) -> np.ndarray:
        """Decoded spectra ψ(L) (n, L) of latents (n, latent)."""
        return self._run(self.decoder, latent, "latent", self.config["latent"])

    def reconstruct(self, spectra) -> np.ndarray:
        """Ẑ = ψ(φ(Z)) (n, L)."""
        return self._run(lambda z: self.decoder(self.encoder(z)), spectra, "spectra", self.config["length"])

    def predict_latent(self, latent, *, standardised: bool = False) -> np.ndarray:
        """ξ(L) (n,) for latents (n, latent): the predicted loss (standardised units if asked)."""
        out = self._run(lambda h: self.head(h).squeeze(-1), latent, "latent", self.config["latent"])
        return out if standardised else self.unstandardise(out)

    def predict(self, spectra, *, standardised: bool = False) -> np.ndarray:
        """T̂ = ξ(φ(Z)) (n,), in loss units unless ``standardised``."""
        out = self._run(lambda z: self.head(self.encoder(z)).squeeze(-1), spectra, "spectra", self.config["length"])
        return out if standardised else self.unstandardise(out)

    def standardise(self, loss) -> np.ndarray:
        """(loss − μ_T) / σ_T with the training targets' mean and deviation."""
        return (np.asarray(loss, dtype=np.float64) - float(self.target_mean)) / float(self.target_std)

    def unstandardise(self, value) -> np.ndarray:
        return np.asarray(value, dtype=np.float64) * float(self.target_std) + float(self.target_mean)

    def head_weights(self) -> tuple[np.ndarray, float]:
        """The head ξ(L) = w·L + b as (w (latent,), b), float64, in standardised target units."""
        return (self.head.weight.detach().cpu().to(torch.float64).numpy()[0],
                float(self.head.bias.detach().cpu().to(torch.float64)))


def alpha_schedule(alpha0: float = 1.0, ratios: Sequence[float] = (1.0, 1.0, 1.5, 2.0)) -> tuple[float, ...]:
    """The staged prediction weights α₀·ratios (default four stages, as the original 200/200/300/400)."""
    if not alpha0 > 0 or not ratios or any(r <= 0 for r in ratios):
        raise ValueError(f"alpha0 and ratios: must be positive, got alpha0 = {alpha0}, ratios = {tuple(ratios)}")
    return tuple(float(alpha0 * r) for r in ratios)


@dataclass(frozen=True)
class AeEpoch:
    """Losses after one epoch (``epoch`` counts from 1). Training terms are means over the epoch's
    shuffled mini-batches in training mode (dropout on); validation terms are in evaluation mode.
    Prediction losses are in standardised target units."""

    epoch: int
    stage: int
    alpha: float
    train_reconstruction: float
    train_prediction: float
    val_reconstruction: float | None
    val_prediction: float | None

    @property
    def train_total(self) -> float:
        return self.train_reconstruction + self.alpha * self.train_prediction


@dataclass
class AeLLEFit:
    """A fitted autoencoder and its raw material.

    ``model`` holds the state with the lowest validation prediction loss (``best_epoch``; the final
    state when no validation split was given), in evaluation mode. ``best_state`` and
    ``final_state`` are independent deep copies of the two state dicts; ``best`` and ``final`` their
    epoch records, so the difference between model selection and the last epoch can be reported.
    """

    model: AeLLE
    history: list[AeEpoch]
    best_epoch: int
    best_state: dict
    final_state: dict
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def best(self) -> AeEpoch:
        return self.history[self.best_epoch - 1]

    @property
    def final(self) -> AeEpoch:
        return self.history[-1]

    def final_model(self) -> AeLLE:
        """A copy of the model with the final state."""
        return AeLLE.from_state(self.model.config, self.final_state).to(next(self.model.parameters()).device)

    def history_frame(self):
        """The history as a pandas DataFrame, one row per epoch."""
        import pandas as pd

        return pd.DataFrame([{**asdict(e), "train_total": e.train_total} for e in self.history])


@contextlib.contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (None: leave the setting alone), then restore it.

    Small models gain nothing from intra-op threads, and on a busy machine the threads wait on each
    other: one thread can be many times faster for the autoencoder and PredNet.
    """
    if count is None:
        yield
        return
    if not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"num_threads: must be a positive integer or None, got {count!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _snapshot(model: nn.Module) -> dict:
    """A real copy of the state: ``state_dict()`` alone returns tensors that share storage with the
    live parameters (the original code's "best" state silently tracked the latest weights)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _check_pair(inputs, targets, names: tuple[str, str], width: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Finite float64 inputs (n, width) and targets (n,), or a ValueError naming ``names``."""
    z, t = (np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
            for a in (inputs, targets))
    if z.ndim != 2 or (width is not None and z.shape[1] != width):
        raise ValueError(f"{names[0]}: expected shape (n, {width or 'features'}), got {z.shape}")
    if t.shape != (z.shape[0],):
        raise ValueError(f"{names[1]}: expected one value per row of {names[0]}, shape ({z.shape[0]},), got {t.shape}")
    for label, array in zip(names, (z, t)):
        if not np.isfinite(array).all():
            raise ValueError(f"{label}: contains NaN or infinite values; drop those networks first (prepare_spectra "
                             f"rejects non-finite spectra and reports them)")
    return z, t


def _losses(model: AeLLE, z: torch.Tensor, t: torch.Tensor, reconstruction: str, prediction: str):
    """(reconstruction, prediction) loss tensors of Eq. 3.6 on one batch."""
    recon, predicted, _ = model(z)
    rec = (recon - z).abs().mean() if reconstruction == "l1" else ((recon - z) ** 2).mean()
    pred = ((predicted - t) ** 2).mean() if prediction == "l2" else (predicted - t).abs().mean()
    return rec, pred


def _train_epoch(model: AeLLE, optimizer: torch.optim.Optimizer, z: torch.Tensor, t: torch.Tensor, alpha: float,
                 order: torch.Tensor, batch_size: int, losses: dict) -> tuple[float, float]:
    """One pass over shuffled mini-batches; the epoch's mean reconstruction and prediction losses."""
    model.train()
    totals = torch.zeros(2, dtype=torch.float64, device=z.device)  # summed on the device: one sync per epoch
    for batch in order.to(z.device).split(batch_size):
        rec, pred = _losses(model, z[batch], t[batch], **losses)
        optimizer.zero_grad()
        (rec + alpha * pred).backward()
        optimizer.step()
        totals += torch.stack([rec.detach(), pred.detach()]).to(torch.float64) * len(batch)
    rec_mean, pred_mean = (totals / len(t)).tolist()
    return rec_mean, pred_mean


@torch.no_grad()
def _validate(model: AeLLE, z: torch.Tensor, t: torch.Tensor, losses: dict) -> tuple[float, float]:
    model.eval()
    rec, pred = _losses(model, z, t, **losses)
    return rec.item(), pred.item()


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
    1 is the fastest for these small models (on a busy 2-core machine, one thread fitted 77 spectra of
    length 128 for 1000 epochs in 11 s, two threads in 134 s); None leaves torch's setting alone.
    """
    z, t = _check_pair(spectra, targets, ("spectra", "targets"), None)
    if z.shape[0] < 2:
        raise ValueError(f"spectra: need at least 2 training spectra, got {z.shape[0]}")
    has_val = val_spectra is not None or val_targets is not None
    if has_val:
        if val_spectra is None or val_targets is None:
            raise ValueError("val_spectra and val_targets: give both or neither")
        z_val, t_val = _check_pair(val_spectra, val_targets, ("val_spectra", "val_targets"), z.shape[1])
    if reconstruction not in ("l1", "l2") or prediction not in ("l1", "l2"):
        raise ValueError(f"reconstruction and prediction: each 'l1' or 'l2', got {reconstruction!r}, {prediction!r}")
    for name, value in (("epochs_per_stage", epochs_per_stage), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: must be a positive integer, got {value!r}")
    alphas = alpha_schedule(alpha0, alpha_ratios)
    mean, std = float(t.mean()), float(t.std())
    if not std > 0:
        raise ValueError(f"targets: all {len(t)} losses are equal ({mean}), so there is nothing to predict")
    device = torch.device(device)
    settings = dict(latent=latent, hidden=hidden, dropout=dropout, epochs_per_stage=epochs_per_stage, alphas=alphas,
                    lr=lr, batch_size=batch_size, reconstruction=reconstruction, prediction=prediction, seed=seed,
                    device=str(device), dtype=str(dtype), n_train=len(t), n_val=len(t_val) if has_val else 0)
    start = time.perf_counter()
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), cpu_threads(num_threads):
        torch.manual_seed(seed)
        model = AeLLE(z.shape[1], latent=latent, hidden=hidden, dropout=dropout).to(device=device, dtype=dtype)
        model.target_mean.fill_(mean)
        model.target_std.fill_(std)
        as_t = lambda a: torch.as_tensor(a, device=device, dtype=dtype)  # noqa: E731
        z_t, t_t = as_t(z), as_t((t - mean) / std)
        if has_val:
            zv_t, tv_t = as_t(z_val), as_t((t_val - mean) / std)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        order_rng = torch.Generator().manual_seed(seed)
        losses = {"reconstruction": reconstruction, "prediction": prediction}
        history, best_state, best_loss = [], None, np.inf
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(alphas) * epochs_per_stage, desc="AeLLE", unit="epoch")
        for stage, alpha in enumerate(alphas, start=1):
            for _ in range(epochs_per_stage):
                order = torch.randperm(len(t), generator=order_rng)
                rec, pred = _train_epoch(model, optimizer, z_t, t_t, alpha, order, batch_size, losses)
                val_rec, val_pred = _validate(model, zv_t, tv_t, losses) if has_val else (None, None)
                record = AeEpoch(epoch=len(history) + 1, stage=stage, alpha=alpha, train_reconstruction=rec,
                                 train_prediction=pred, val_reconstruction=val_rec, val_prediction=val_pred)
                history.append(record)
                if has_val and val_pred < best_loss:
                    best_loss, best_state, best_epoch = val_pred, _snapshot(model), record.epoch
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(alpha=alpha, rec=f"{rec:.3g}", pred=f"{pred:.3g}",
                                    val=f"{val_pred:.3g}" if has_val else "-", refresh=False)
        if bar is not None:
            bar.close()
    final_state = _snapshot(model)
    if best_state is None:
        best_state, best_epoch = _snapshot(model), len(history)
    model.load_state_dict(best_state)
    model.eval()
    return AeLLEFit(model=model, history=history, best_epoch=best_epoch, best_state=best_state, final_state=final_state,
                    settings=settings, seconds=time.perf_counter() - start)
