"""
Evaluation: mesh-quality metrics (NKSR/NoKSR protocol) and classical baselines.

Import the submodules directly (`metrics`, `baselines`, `ray_tsdf`, `toy_scene`); they pull in
open3d, so this package stays import-light.
"""
