"""
Save and load model checkpoints safely (`torch.load(weights_only=True)`, never pickles).

A checkpoint is a dict: format tag, the ModelSpec as plain data, the state dict, and metadata
(training command, steps, seeds). Optimiser state may be included for resuming training.
"""

from __future__ import annotations

from pathlib import Path
import pickle
from typing import Any
import zipfile

import torch

from noksr_ros.errors import CheckpointError
from noksr_ros.io.atomic import SHARED, atomic_write
from noksr_ros.model.noksr import ModelSpec, NoksrModel

FORMAT = 'noksr_ros/checkpoint/1'
SHIPPED = Path(__file__).resolve().parents[1] / 'checkpoints' / 'noksr_small.pt'


def save_checkpoint(path: str | Path, model: NoksrModel, meta: dict[str, Any] | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {'format': FORMAT, 'spec': model.spec.to_dict(), 'meta': meta or {},
               'state_dict': {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    payload.update(extra or {})
    return atomic_write(path, lambda handle: torch.save(payload, handle), SHARED)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded with weights_only=True; CheckpointError names the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist')
    try:
        data = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f'checkpoint {path} contains objects other than tensors and plain '
                              f'data and was refused (weights_only=True): {exc}') from exc
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(f'checkpoint {path} is corrupt or not a torch file: {exc}') from exc
    if not isinstance(data, dict) or data.get('format') != FORMAT:
        raise CheckpointError(f'checkpoint {path} is not a noksr_ros checkpoint '
                              f'(expected format {FORMAT!r})')
    return data


def load_model(path: str | Path | None = None, device: torch.device | str = 'cpu'
               ) -> tuple[NoksrModel, dict[str, Any]]:
    """Model (eval mode, on `device`) and its metadata; `path=None` loads the shipped one."""
    path = Path(path) if path else SHIPPED
    data = read_checkpoint(path)
    try:
        spec = ModelSpec.from_dict(data['spec'])
        model = NoksrModel(spec)
        model.load_state_dict(data['state_dict'], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f'checkpoint {path} does not match the model: {exc}') from exc
    return model.to(device).eval(), data.get('meta', {})
