"""noksr_ros: incremental NoKSR surface reconstruction from LiDAR, with a thin ROS 2 front end."""

__version__ = '0.1.0'
