"""Training: exact-SDF crops, resumable runs, non-finite steps skipped."""

import json

import numpy as np
import open3d as o3d
import pytest
import torch

from noksr_ros.model.backbone import BackboneSpec
from noksr_ros.model.checkpoint import load_model
from noksr_ros.model.decoder import DecoderSpec
from noksr_ros.model.losses import LossWeights
from noksr_ros.model.noksr import ModelSpec
from noksr_ros.training.sampling import CropSpec, TrainingScene
from noksr_ros.training.trainer import Trainer, TrainSpec, crop_losses

SPEC = ModelSpec(backbone=BackboneSpec(enc_channels=(8, 8, 16, 16), dec_channels=(8, 8, 16),
                                       heads=(1, 1, 2, 2), patch_size=32),
                 decoder=DecoderSpec(hidden=8, head_hidden=16))
CROP = CropSpec(size_m=4.0, halo_m=0.5, max_points=4000, near_queries=400, band_queries=400,
                surface_queries=200)


@pytest.fixture(scope='module')
def scene():
    """A closed box on the ground, observed from above, plus a zero-area GT triangle."""
    box = o3d.geometry.TriangleMesh.create_box(3.0, 3.0, 1.0)
    box.translate((-1.5, -1.5, 0.0))
    vertices = np.asarray(box.vertices)
    faces = np.asarray(box.triangles)
    degenerate = len(vertices) + np.array([[0, 1, 2]])
    vertices = np.concatenate([vertices, [[5, 5, 0], [5, 5, 0], [5, 5, 0]]])
    faces = np.concatenate([faces, degenerate])
    rng = np.random.default_rng(0)
    top = np.column_stack([rng.uniform(-1.5, 1.5, (6000, 2)), np.ones(6000)])
    side = np.column_stack([np.full(3000, 1.5), rng.uniform(-1.5, 1.5, 3000),
                            rng.uniform(0, 1, 3000)])
    points = np.concatenate([top, side]).astype(np.float32)
    normals = np.concatenate([np.tile([0, 0, 1], (6000, 1)),
                              np.tile([1, 0, 0], (3000, 1))]).astype(np.float32)
    return TrainingScene(points, normals, vertices, faces)


def make_trainer(scene, out, steps, weights=LossWeights()):
    return Trainer([scene], SPEC, TrainSpec(steps=steps, seed=3, checkpoint_every=2, log_every=1),
                   out, crop=CROP, weights=weights)


def test_crops_are_finite_and_carry_the_exact_signed_distance(scene):
    rng = np.random.default_rng(1)
    crops = [c for c in (scene.sample_crop(CROP, rng) for _ in range(10)) if c is not None]
    assert len(crops) >= 5
    for crop in crops:
        for name in ('points', 'normals', 'queries', 'sdf', 'surface'):
            assert np.isfinite(getattr(crop, name)).all(), name
        # Positive inside the box, negative outside; |sdf| is the distance to the box surface.
        q = crop.queries
        inside = np.all((np.abs(q[:, :2]) < 1.5) & (q[:, 2:] > 0) & (q[:, 2:] < 1), axis=1)
        assert np.all((crop.sdf > 0) == inside)
        above = (np.abs(q[:, 0]) < 1.4) & (np.abs(q[:, 1]) < 1.4) & (q[:, 2] > 1)
        assert np.allclose(crop.sdf[above], 1 - q[above, 2], atol=1e-5)


def held_out_loss(model, scene):
    rng = np.random.default_rng(99)
    crops = [c for c in (scene.sample_crop(CROP, rng) for _ in range(6)) if c is not None]
    model.eval()
    with torch.no_grad():
        return float(np.mean([crop_losses(model, c, LossWeights(), torch.device('cpu'))['total']
                              for c in crops]))


def test_training_lowers_the_held_out_loss_and_logs_every_step(scene, tmp_path):
    trainer = Trainer([scene], SPEC, TrainSpec(steps=16, lr=3e-3, seed=3, log_every=1),
                      tmp_path / 'a', crop=CROP)
    before = held_out_loss(trainer.model, scene)
    trainer.run()
    assert trainer.step == 16 and trainer.skipped_steps == 0
    log_text = (tmp_path / 'a' / 'train_log.jsonl').read_text()
    log = [json.loads(line) for line in log_text.splitlines()]
    assert [r['step'] for r in log] == list(range(1, 17))
    assert all(np.isfinite(r['total']) for r in log)
    assert held_out_loss(trainer.model, scene) < 0.97 * before


def test_training_resumes_from_its_last_checkpoint(scene, tmp_path):

    make_trainer(scene, tmp_path / 'b', steps=4).run()
    resumed = make_trainer(scene, tmp_path / 'b', steps=6)
    assert resumed.resume() and resumed.step == 4
    resumed.run()
    model, meta = load_model(tmp_path / 'b' / 'last.pt')
    assert meta['steps'] == 6
    for name, value in model.state_dict().items():
        assert torch.isfinite(value).all(), name


def test_non_finite_steps_are_skipped_and_leave_the_weights_alone(scene, tmp_path):
    trainer = make_trainer(scene, tmp_path / 'inf', steps=2,
                           weights=LossWeights(sdf=float('inf')))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    assert trainer.step == 2 and trainer.skipped_steps == 2
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[name]), name
