"""Make pytest import noksr_ros from this source tree, not a copy installed in the venv."""
