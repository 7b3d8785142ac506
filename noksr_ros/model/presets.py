"""Named model configurations: one small enough to train on 2 CPU cores, one for a GPU."""

from __future__ import annotations

from noksr_ros.model.backbone import BackboneSpec
from noksr_ros.model.decoder import DecoderSpec
from noksr_ros.model.noksr import ModelSpec

PRESETS = {
    # ~0.8 M parameters; trains at a few seconds per step on 2 cores.
    'small': ModelSpec(),
    # Published-like widths (encoder 32..512, decoder 64..256), for a lent GPU.
    'large': ModelSpec(
        grid_m=0.02,
        backbone=BackboneSpec(enc_channels=(32, 64, 128, 256, 512), enc_depths=(2, 2, 2, 6, 2),
                              dec_channels=(64, 64, 128, 256), dec_depths=(2, 2, 2, 2),
                              heads=(2, 4, 8, 16, 32), patch_size=64,
                              curves=('z', 'z-trans', 'hilbert', 'hilbert-trans')),
        decoder=DecoderSpec(hidden=32, head_hidden=128),
        windows=(16, 8, 8, 8, 8)),
}


def model_preset(name: str) -> ModelSpec:
    """The ModelSpec called `name`; ValueError lists the valid names."""
    if name not in PRESETS:
        raise ValueError(f'unknown model preset {name!r}; valid: {sorted(PRESETS)}')
    return PRESETS[name]
