"""The deterioration model: a small GRU over the per-observation features.

* :class:`DeteriorationGRU` runs whole sequences (training, evaluation): one GRU layer,
  a linear head, a logit per observation.
* :class:`StepModule` is the same weights as one recurrent step,
  ``(features [B, F], h_in [B, H]) -> (risk [B, 1], h_out [B, H])`` with
  ``risk = sigmoid(logit / T)``; this is what is exported to ONNX and what the worker
  runs per event, carrying ``h_out`` in the patient state (zeros for a new patient).

Training (:func:`fit`): BCE-with-logits weighted for the class prevalence
(``pos_weight = n_neg / n_pos``), Adam, early stopping on validation AUROC. A weighted
loss multiplies the predicted odds by ``pos_weight``, so after training the head bias is
shifted by ``-log(pos_weight)`` (prior correction) and a temperature ``T`` is fitted on
the validation set by minimising the negative log-likelihood (temperature scaling).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from trainer.dataset import PatientSeq

__all__ = ["DeteriorationGRU", "StepModule", "TrainConfig", "fit", "predict"]


class DeteriorationGRU(nn.Module):
    temperature: torch.Tensor

    def __init__(self, n_features: int, hidden: int = 32) -> None:
        super().__init__()
        self.n_features = n_features
        self.hidden = hidden
        self.gru = nn.GRU(n_features, hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, 1)
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """Uncalibrated logits ``[B, T]`` for features ``[B, T, F]``."""
        out, _ = self.gru(x, None if h0 is None else h0.unsqueeze(0))
        logits: torch.Tensor = self.head(out).squeeze(-1)
        return logits


class StepModule(nn.Module):
    """One recurrent step sharing the weights of a :class:`DeteriorationGRU`."""

    def __init__(self, model: DeteriorationGRU) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, features: torch.Tensor, h_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.model.gru
        w_ih = cast(torch.Tensor, g.weight_ih_l0)
        w_hh = cast(torch.Tensor, g.weight_hh_l0)
        b_ih = cast(torch.Tensor, g.bias_ih_l0)
        b_hh = cast(torch.Tensor, g.bias_hh_l0)
        gi = features @ w_ih.t() + b_ih
        gh = h_in @ w_hh.t() + b_hh
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h_out = (1.0 - z) * n + z * h_in
        logit: torch.Tensor = self.model.head(h_out)
        risk = torch.sigmoid(logit / self.model.temperature)
        return risk, h_out


@dataclass(frozen=True)
class TrainConfig:
    hidden: int = 32
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-5
    patience: int = 6
    grad_clip: float = 1.0
    seed: int = 0


def _pad(
    patients: Sequence[PatientSeq],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features [N, Tmax, F], labels [N, Tmax] (float), mask [N, Tmax] (bool)."""
    n = len(patients)
    t_max = max(len(p.y) for p in patients)
    f = patients[0].x.shape[1]
    x = np.zeros((n, t_max, f), dtype=np.float32)
    y = np.zeros((n, t_max), dtype=np.float32)
    m = np.zeros((n, t_max), dtype=np.bool_)
    for i, p in enumerate(patients):
        t = len(p.y)
        x[i, :t] = p.x
        y[i, :t] = p.y
        m[i, :t] = True
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(m)


@torch.no_grad()
def _logits(model: DeteriorationGRU, patients: Sequence[PatientSeq]) -> list[npt.NDArray[Any]]:
    model.eval()
    out: list[npt.NDArray[Any]] = []
    for start in range(0, len(patients), 256):
        chunk = patients[start : start + 256]
        x, _, _ = _pad(chunk)
        lg = model(x).numpy()
        out.extend(lg[i, : len(p.y)].astype(np.float64) for i, p in enumerate(chunk))
    return out


def predict(model: DeteriorationGRU, patients: Sequence[PatientSeq]) -> list[npt.NDArray[Any]]:
    """Calibrated risk per observation, one array per patient."""
    t = float(model.temperature)
    return [1.0 / (1.0 + np.exp(-lg / t)) for lg in _logits(model, patients)]


def _auroc(model: DeteriorationGRU, patients: Sequence[PatientSeq]) -> float:
    y = np.concatenate([p.y for p in patients])
    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, np.concatenate(_logits(model, patients))))


def _fit_temperature(logits: npt.NDArray[Any], y: npt.NDArray[Any]) -> float:
    lg = torch.tensor(logits, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(lg / log_t.exp(), yt)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return t if math.isfinite(t) and 0.05 < t < 20.0 else 1.0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fit(
    train: Sequence[PatientSeq],
    val: Sequence[PatientSeq],
    cfg: TrainConfig = TrainConfig(),
    *,
    verbose: bool = True,
) -> tuple[DeteriorationGRU, dict[str, Any]]:
    """Train, early-stop on val AUROC, prior-correct and temperature-scale on val."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    n_features = train[0].x.shape[1]
    model = DeteriorationGRU(n_features, cfg.hidden)
    x, y, m = _pad(train)
    n_pos = float(y[m].sum())
    n_neg = float(m.sum()) - n_pos
    pos_weight = max(n_neg / max(n_pos, 1.0), 1.0)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    pw = torch.tensor(pos_weight)

    best_auc = -1.0
    best_state: dict[str, torch.Tensor] = {k: v.clone() for k, v in model.state_dict().items()}
    best_epoch = 0
    history: list[dict[str, float]] = []
    t0 = time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        total = 0.0
        for start in range(0, len(train), cfg.batch_size):
            idx = perm[start : start + cfg.batch_size]
            xb, yb, mb = x[idx], y[idx], m[idx]
            t_used = int(mb.sum(dim=1).max())
            xb, yb, mb = xb[:, :t_used], yb[:, :t_used], mb[:, :t_used]
            logits = model(xb)
            loss = nn.functional.binary_cross_entropy_with_logits(logits[mb], yb[mb], pos_weight=pw)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total += loss.item() * len(idx)
        auc = _auroc(model, val)
        history.append({"epoch": epoch, "loss": total / len(train), "val_auroc": auc})
        if verbose:
            _log(
                f"epoch {epoch:3d}  loss {total / len(train):.4f}  val AUROC {auc:.4f}"
                f"  ({time.monotonic() - t0:.1f}s)"
            )
        if auc > best_auc:
            best_auc, best_epoch = auc, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= cfg.patience:
            break
    model.load_state_dict(best_state)

    with torch.no_grad():
        model.head.bias.sub_(math.log(pos_weight))
    val_logits = np.concatenate(_logits(model, val))
    val_y = np.concatenate([p.y for p in val]).astype(np.float64)
    temperature = _fit_temperature(val_logits, val_y)
    model.temperature.fill_(temperature)
    model.eval()
    info = {
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "best_val_auroc": best_auc,
        "pos_weight": pos_weight,
        "temperature": temperature,
        "train_seconds": round(time.monotonic() - t0, 2),
        "history": history,
        "config": cfg.__dict__,
    }
    return model, info
