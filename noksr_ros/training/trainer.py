"""
The training loop: crops -> losses -> Adam, with resumable checkpoints and a progress bar.

Seeds are fixed (torch and numpy generators passed around, no global state), so a run with the
same scenes, seed and step count gives the same weights on the same machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
import json
import math
from pathlib import Path
import time

import numpy as np
import torch
from tqdm import tqdm

from noksr_ros.model.checkpoint import read_checkpoint, save_checkpoint
from noksr_ros.model.losses import LossWeights, sdf_loss, udf_loss
from noksr_ros.model.noksr import ModelSpec, NoksrModel
from noksr_ros.training.sampling import Crop, CropSpec, TrainingScene


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation settings."""

    steps: int = 1000
    lr: float = 1e-3
    cosine_from: float = 0.6
    seed: int = 0
    checkpoint_every: int = 50
    log_every: int = 10


def _lr_at(step: int, spec: TrainSpec) -> float:
    """Constant, then cosine decay over the last (1 - cosine_from) of the steps."""
    start = int(spec.steps * spec.cosine_from)
    if step < start:
        return spec.lr
    frac = (step - start) / max(1, spec.steps - start)
    return spec.lr * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))


def crop_losses(model: NoksrModel, crop: Crop, weights: LossWeights,
                device: torch.device) -> dict[str, torch.Tensor]:
    """Loss terms of one crop (noksr.md weights)."""
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(device)

    enc = model.encode(t(crop.points), t(crop.normals))
    queries = torch.cat([t(crop.queries), t(crop.surface)])
    sdf, udf = model.decode(enc, queries)
    n = len(crop.queries)
    target = t(crop.sdf)
    terms = {
        'sdf': weights.sdf * sdf_loss(sdf[:n], target, weights.clamp_m),
        'surface': weights.surface * sdf[n:].abs().mean(),
        'udf': weights.udf * udf_loss(udf[:n], target.abs(), weights.clamp_m),
    }
    terms['total'] = sum(terms.values())
    return terms


class Trainer:
    """Owns the model, optimiser and RNGs; `run()` trains to `spec.steps`, resuming if asked."""

    def __init__(self, scenes: list[TrainingScene], model_spec: ModelSpec, spec: TrainSpec,
                 out_dir: Path, crop: CropSpec = CropSpec(), weights: LossWeights = LossWeights(),
                 device: torch.device = torch.device('cpu'), meta: dict | None = None) -> None:
        if not scenes:
            raise ValueError('training needs at least one scene')
        self.scenes, self.spec, self.crop, self.weights = scenes, spec, crop, weights
        self.device, self.out_dir, self.meta = device, Path(out_dir), meta or {}
        torch.manual_seed(spec.seed)
        self.model = NoksrModel(model_spec).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=spec.lr)
        self.rng = np.random.default_rng(spec.seed)
        self.step = 0
        self.skipped_steps = 0
        self.log_path = self.out_dir / 'train_log.jsonl'

    @property
    def last_path(self) -> Path:
        """The resumable checkpoint of this run."""
        return self.out_dir / 'last.pt'

    def resume(self) -> bool:
        """Load `last.pt` if present (model, optimiser, step, RNG state)."""
        if not self.last_path.exists():
            return False
        data = read_checkpoint(self.last_path)
        self.model.load_state_dict(data['state_dict'])
        self.opt.load_state_dict(data['optimizer'])
        self.step = int(data['step'])
        self.rng = np.random.default_rng(self.spec.seed + self.step)
        torch.manual_seed(self.spec.seed + self.step)
        return True

    def save(self) -> Path:
        """Write `last.pt` with everything needed to resume."""
        meta = dict(self.meta, steps=self.step, train=asdict(self.spec), crop=asdict(self.crop))
        return save_checkpoint(self.last_path, self.model, meta,
                               extra={'optimizer': self.opt.state_dict(), 'step': self.step})

    def _next_crop(self) -> Crop:
        while True:
            scene = self.scenes[int(self.rng.integers(len(self.scenes)))]
            crop = scene.sample_crop(self.crop, self.rng)
            if crop is not None:
                return crop

    def train_step(self) -> dict[str, float]:
        """One optimisation step on one crop."""
        for group in self.opt.param_groups:
            group['lr'] = _lr_at(self.step, self.spec)
        self.model.train()
        terms = crop_losses(self.model, self._next_crop(), self.weights, self.device)
        self.opt.zero_grad(set_to_none=True)
        terms['total'].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 10.0)
        # A non-finite loss or gradient would poison every weight through Adam: skip the update
        # (the step still counts, so a bad crop cannot stall a run) and report it in the log.
        finite = bool(torch.isfinite(terms['total'])) and bool(torch.isfinite(grad_norm))
        if finite:
            self.opt.step()
        else:
            self.skipped_steps += 1
        self.step += 1
        out = {k: float(v.detach()) for k, v in terms.items()}
        out['skipped_steps'] = self.skipped_steps
        return out

    def run(self, on_log: Callable[[dict], None] | None = None) -> Path:
        """Train until `spec.steps`; checkpoints every `checkpoint_every` steps and at the end."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=self.spec.steps, initial=self.step, desc='train', unit='step')
        t0 = time.monotonic()
        while self.step < self.spec.steps:
            losses = self.train_step()
            bar.update(1)
            bar.set_postfix(loss=f"{losses['total']:.2f}")
            if self.step % self.spec.log_every == 0 or self.step == self.spec.steps:
                record = dict(losses, step=self.step, elapsed_s=time.monotonic() - t0)
                with self.log_path.open('a') as fh:
                    fh.write(json.dumps(record) + '\n')
                if on_log:
                    on_log(record)
            if self.step % self.spec.checkpoint_every == 0:
                self.save()
        bar.close()
        return self.save()
