"""Entry point of the `noksr` command (typer). Only argument parsing and calls into the core."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from noksr_ros.errors import NoksrError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help='NoKSR surface reconstruction from LiDAR drives.')


def _fail(exc: Exception) -> None:
    """Print an error the user can act on and exit with status 2."""
    typer.secho(f'error: {exc}', err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


@app.command()
def simulate(
    seed: int = typer.Option(..., help='Scene and sensor seed (deterministic).'),
    out: Path = typer.Option(..., help='Output directory (gt_mesh.ply, npz/, drive.mcap).'),
    length_m: float = typer.Option(300.0, help='Length of the drive along the route.'),
    speed_mps: float = typer.Option(8.0, help='Vehicle speed.'),
    storage: str = typer.Option('mcap', help="Bag storage: 'mcap' or 'sqlite3'."),
    no_bag: bool = typer.Option(False, help='Skip writing the ROS 2 bag.'),
    no_npz: bool = typer.Option(False, help='Skip writing the npz scans.'),
) -> None:
    """Generate a CARLA-like town, drive a simulated 64-beam LiDAR through it, write the drive."""
    from noksr_ros.data.drive import simulate_drive

    if storage not in ('mcap', 'sqlite3'):
        _fail(ValueError(f"--storage must be 'mcap' or 'sqlite3', got {storage!r}"))
    try:
        summary = simulate_drive(seed, out, length_m=length_m, speed_mps=speed_mps,
                                 write_bag=not no_bag, write_npz=not no_npz, storage=storage)
    except (NoksrError, ValueError, OSError) as exc:
        _fail(exc)
    typer.echo(f'wrote {out}: {summary}')


@app.command('config')
def show_config(
    file: Optional[Path] = typer.Argument(None, help='YAML file to validate and show.'),
    set_: list[str] = typer.Option([], '--set', help='Override, e.g. mapping.halo_m=2.'),
) -> None:
    """Print every config key with its value and help text (validating FILE and --set)."""
    from noksr_ros.config import field_specs, load_config, parse_set_options

    try:
        cfg = load_config(file, parse_set_options(set_))
    except NoksrError as exc:
        _fail(exc)
    values = cfg.to_flat()
    for spec in field_specs():
        typer.echo(f'{spec.name} = {values[spec.name]!r}    # {spec.help}')


@app.command()
def train(
    drives: list[Path] = typer.Argument(..., help='Simulated drive folders (noksr simulate).'),
    out: Path = typer.Option(Path('out/train'), help='Run folder: last.pt, train_log.jsonl.'),
    steps: int = typer.Option(1000, help='Optimisation steps (one crop each).'),
    preset: str = typer.Option('small', help="Model preset: 'small' (CPU) or 'large' (GPU)."),
    seed: int = typer.Option(0, help='Seed of crops and initial weights.'),
    lr: float = typer.Option(1e-3, help='Adam learning rate (cosine decay over the last 40%).'),
    device: str = typer.Option('cpu', help="Torch device, e.g. 'cpu' or 'cuda'."),
    resume: bool = typer.Option(True, help='Continue from OUT/last.pt when it exists.'),
    config: Optional[Path] = typer.Option(None, help='YAML config (ingest/normals/mapping).'),
) -> None:
    """Train the NoKSR model on simulated drives; checkpoints are resumable."""
    import sys

    import torch

    from noksr_ros.config import load_config
    from noksr_ros.model.presets import model_preset
    from noksr_ros.training.sampling import CropSpec
    from noksr_ros.training.scenes import load_training_scene
    from noksr_ros.training.trainer import Trainer, TrainSpec

    try:
        cfg = load_config(config)
        scenes = [load_training_scene(d, cfg) for d in drives]
        meta = {'command': ' '.join(['noksr'] + sys.argv[1:]),
                'drives': [str(d) for d in drives], 'preset': preset}
        crop = CropSpec(normals_knn=cfg.normals.segment_knn,  # the Reconstructor's input
                        normals_cell_m=cfg.normals.segment_cell_m)
        trainer = Trainer(scenes, model_preset(preset), TrainSpec(steps=steps, lr=lr, seed=seed),
                          out, crop=crop, device=torch.device(device), meta=meta)
    except (NoksrError, ValueError, OSError) as exc:
        _fail(exc)
    if resume and trainer.resume():
        typer.echo(f'resuming {out / "last.pt"} at step {trainer.step}')
    path = trainer.run()
    typer.echo(f'wrote {path}')


@app.command()
def reconstruct(
    out: Path = typer.Option(..., help='Output mesh (PLY, map frame).'),
    bag: Optional[Path] = typer.Option(None, help='ROS 2 bag (folder, .mcap or .db3).'),
    npz: Optional[Path] = typer.Option(None, help='npz drive folder (noksr simulate).'),
    config: Optional[Path] = typer.Option(None, help='YAML config.'),
    set_: list[str] = typer.Option([], '--set', help='Override, e.g. model.device=cuda.'),
    update_every: int = typer.Option(20, help='Reconstruct dirty segments every N scans.'),
    lidar_topic: Optional[str] = typer.Option(None, help='PointCloud2 topic of the bag '
                                              '(ros.lidar_topic).'),
    odom_topic: Optional[str] = typer.Option(None, help='Odometry topic (ros.odom_topic).'),
    map_frame: Optional[str] = typer.Option(None, help='Map frame (ros.map_frame).'),
    base_frame: Optional[str] = typer.Option(None, help='Vehicle frame (ros.base_frame).'),
    lidar_frame: Optional[str] = typer.Option(None, help='LiDAR frame (ros.lidar_frame).'),
) -> None:
    """Reconstruct a whole drive (bag or npz) into one mesh (batch mode) plus OUT.json timings."""
    from noksr_ros.config import load_config, parse_set_options
    from noksr_ros.offline import bag_source, model_from_config, npz_source, reconstruct_drive

    if (bag is None) == (npz is None):
        _fail(ValueError('give exactly one of --bag PATH or --npz DIR'))
    flags = {'ros.lidar_topic': lidar_topic, 'ros.odom_topic': odom_topic,
             'ros.map_frame': map_frame, 'ros.base_frame': base_frame,
             'ros.lidar_frame': lidar_frame}
    try:
        overrides = parse_set_options(set_)
        overrides.update({k: v for k, v in flags.items() if v is not None})
        cfg = load_config(config, overrides)
        source = bag_source(bag, cfg) if bag is not None else npz_source(npz)
        model, device = model_from_config(cfg)
        result = reconstruct_drive(source, cfg, model, device, out,
                                   update_every_scans=update_every)
    except (NoksrError, ValueError, OSError) as exc:
        _fail(exc)
    import json

    timings = out.with_suffix('.json')
    timings.write_text(json.dumps({
        'mesh': str(out), 'vertices': len(result.vertices), 'faces': len(result.faces),
        'scans': result.scans, 'points_kept': result.points_kept, 'segments': result.segments,
        'wall_s': result.wall_s, 'network_s': result.network_s, 'meshing_s': result.meshing_s,
        'scans_per_s': result.scans / result.wall_s if result.wall_s > 0 else None,
        'segments_out_of_memory': len(result.failed)}, indent=2))
    typer.echo(f'wrote {out}: {len(result.vertices)} vertices, {len(result.faces)} faces from '
               f'{result.scans} scans ({result.points_kept} points kept, {result.segments} '
               f'segments) in {result.wall_s:.1f} s (network {result.network_s:.1f} s, meshing '
               f'{result.meshing_s:.1f} s)')


@app.command()
def evaluate(
    drives: list[Path] = typer.Argument(..., help='Simulated drive folders (held-out seeds).'),
    methods: str = typer.Option('noksr,tsdf_10cm,tsdf_5cm,poisson',
                                help='Comma-separated methods to run.'),
    out: Path = typer.Option(Path('out/evaluate.json'), help='JSON with every row.'),
    set_: list[str] = typer.Option([], '--set', help='Override, e.g. model.checkpoint=run.pt.'),
    samples: int = typer.Option(1_000_000, help='Surface samples per mesh.'),
) -> None:
    """Run ours and the baselines on the same drives; print one table and write JSON."""
    import json

    from rich.console import Console
    from rich.table import Table

    from noksr_ros.config import parse_set_options
    from noksr_ros.evaluation.compare import METHODS, evaluate_drive, mean_rows

    chosen = tuple(m.strip() for m in methods.split(',') if m.strip())
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        _fail(ValueError(f'unknown methods {unknown}; valid: {", ".join(METHODS)}'))
    rows = []
    try:
        overrides = parse_set_options(set_)
        for drive in drives:
            rows += evaluate_drive(drive, chosen, overrides, samples, log=typer.echo)
    except (NoksrError, ValueError, OSError) as exc:
        _fail(exc)
    rows += mean_rows(rows) if len(drives) > 1 else []
    columns = ['drive', 'method', 'cd_cm', 'acc_cm', 'comp_cm', 'f5', 'f10', 'f20', 'cd_seen_cm',
               'f10_seen', 'time_s', 'peak_rss_mb']
    table = Table(title='mesh quality (cm; F-score %), GT cropped to 0.5 m of the input; '
                  '_seen: only GT with input points on its own surface')
    for c in columns:
        table.add_column(c, justify='left' if c in ('drive', 'method') else 'right')
    for r in rows:
        table.add_row(*[f'{r[c]:.2f}' if isinstance(r[c], float) else str(r[c])
                        for c in columns])
    Console(width=160).print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({'rows': rows, 'overrides': overrides}, indent=2))
    typer.echo(f'wrote {out}')


@app.command()
def play(
    bag: Path = typer.Argument(..., help='ROS 2 bag (folder, .mcap or .db3) to publish.'),
    rate: float = typer.Option(1.0, help='Speed factor of the original timing.'),
    topics: Optional[str] = typer.Option(None, help='Comma-separated topics (default: all).'),
    wait_for: str = typer.Option('', help='Start once this topic (or each of several, '
                                 'comma-separated) has a subscriber.'),
    wait_s: float = typer.Option(10.0, help='Longest wait for that subscriber.'),
) -> None:
    """Publish a recorded or simulated bag's topics with their original timing (needs rclpy)."""
    try:
        from noksr_ros.ros.player import run_player
    except ImportError as exc:
        _fail(RuntimeError(f'noksr play needs rclpy (run scripts/setup.sh or source ROS): {exc}'))
    try:
        stats = run_player(bag, rate=rate, topics=topics.split(',') if topics else None,
                           wait_topic=wait_for, wait_s=wait_s)
    except (NoksrError, ValueError, OSError) as exc:
        _fail(exc)
    counts = ', '.join(f'{t}: {n}' for t, n in sorted(stats.published.items()))
    typer.echo(f'played {bag} in {stats.wall_s:.1f} s ({counts})')
    for topic, msgtype in sorted(stats.skipped_topics.items()):
        typer.echo(f'skipped {topic} ({msgtype} not installed)')


@app.command()
def demo(
    out: Path = typer.Option(Path('out/demo'), help='Output folder (mesh.ply, preview.png, '
                             'report.md).'),
    bag: Optional[Path] = typer.Option(None, help='Your own recording instead of a simulated '
                                       'drive (CARLA bridge topics).'),
    seed: int = typer.Option(1100, help='Seed of the simulated drive (held out from training).'),
    length_m: float = typer.Option(40.0, help='Length of the simulated drive.'),
    set_: list[str] = typer.Option([], '--set', help='Node parameter, e.g. model.device=cuda.'),
) -> None:
    """Simulated drive -> live ROS 2 node -> mesh, preview picture and quality report."""
    from noksr_ros.config import NoksrConfig, parse_set_options

    try:
        overrides = parse_set_options(set_)
        NoksrConfig().with_overrides(overrides)  # a bad key fails here, not in the node
        from noksr_ros.ros.demo import run_demo
    except ImportError as exc:
        _fail(RuntimeError(f'noksr demo needs rclpy (run scripts/setup.sh or source ROS): {exc}'))
    except (NoksrError, ValueError) as exc:
        _fail(exc)
    try:
        run_demo(out, bag, seed=seed, length_m=length_m, overrides=overrides)
    except (NoksrError, ValueError, OSError, RuntimeError, TimeoutError) as exc:
        _fail(exc)


@app.command()
def docs(
    readme: Path = typer.Argument(Path('README.md'), help='Markdown file with generated blocks.'),
    check: bool = typer.Option(False, help='Exit 1 if the file is out of date instead of '
                               'writing it.'),
) -> None:
    """Refresh the topics / services / parameters tables generated from the code."""
    from noksr_ros.ros.interface import render_generated

    text = readme.read_text()
    fresh = render_generated(text)
    if check:
        if fresh != text:
            typer.echo(f'{readme} is out of date: run `noksr docs {readme}`', err=True)
            raise typer.Exit(1)
        typer.echo(f'{readme} is up to date')
        return
    readme.write_text(fresh)
    typer.echo(f'wrote {readme}')


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == '__main__':
    main()
