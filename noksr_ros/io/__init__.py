"""
Input/output without ROS: PointCloud2 <-> numpy, transform maths, and ROS 2 bags (rosbags).

Modules are imported on their own (`from noksr_ros.io.pointcloud2 import read_points`) so that a
caller needing only numpy decoding does not load scipy or rosbags.
"""
