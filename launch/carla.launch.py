"""
Start the noksr node beside a CARLA ROS bridge (and optionally RViz, or a bag player).

    ros2 launch noksr_ros carla.launch.py
    ros2 launch noksr_ros carla.launch.py rviz:=true device:=cuda
    ros2 launch noksr_ros carla.launch.py bag:=/path/to/drive.mcap rviz:=true   # no CARLA needed
"""

import os
import sys

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

try:  # Iron and newer; LaunchConfigurationNotEquals is deprecated there
    from launch.substitutions import NotEqualsSubstitution
except ImportError:  # Humble
    NotEqualsSubstitution = None
    from launch.conditions import LaunchConfigurationNotEquals

# launch argument -> (node parameter, default, description); string-typed parameters.
STRING_ARGUMENTS = {
    'lidar_topic': ('ros.lidar_topic', '/carla/ego_vehicle/lidar', 'PointCloud2 topic.'),
    'odom_topic': ('ros.odom_topic', '/carla/ego_vehicle/odometry', 'nav_msgs/Odometry topic.'),
    'map_frame': ('ros.map_frame', 'map', 'Fixed frame of the mesh.'),
    'base_frame': ('ros.base_frame', 'ego_vehicle', 'Vehicle frame.'),
    'lidar_frame': ('ros.lidar_frame', '', "LiDAR frame ('' = the cloud's header)."),
    'pose_source': ('ros.pose_source', 'auto', 'tf, odometry, transform or auto.'),
    'device': ('model.device', 'auto', 'Torch device: cpu, cuda, auto.'),
    'checkpoint': ('model.checkpoint', '', "Checkpoint file ('' = the shipped one)."),
}


def generate_launch_description():
    """Arguments, the node, and the optional RViz and bag player."""
    share = get_package_share_directory('noksr_ros')
    arguments = [
        DeclareLaunchArgument('params_file', default_value=os.path.join(share, 'config',
                                                                         'carla.yaml'),
                              description='Parameter file of the node.'),
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='Use /clock (true with a CARLA bridge in sync mode).'),
        DeclareLaunchArgument('rviz', default_value='false', description='Start RViz 2.'),
        DeclareLaunchArgument('bag', default_value='',
                              description='Play this bag on the bridge topics (no CARLA needed).'),
    ]
    overrides = {}
    for name, (parameter, default, description) in STRING_ARGUMENTS.items():
        arguments.append(DeclareLaunchArgument(name, default_value=default,
                                               description=description))
        overrides[parameter] = ParameterValue(LaunchConfiguration(name), value_type=str)
    overrides['use_sim_time'] = ParameterValue(LaunchConfiguration('use_sim_time'),
                                               value_type=bool)
    # prefix: run the wrapper with this interpreter rather than its '#!/usr/bin/env python3' (a
    # venv that is not activated would give the system python, without rclpy or noksr_ros).
    # sigterm_timeout: on SIGINT the node finishes the segment it is reconstructing first.
    node = Node(package='noksr_ros', executable='noksr_node', name='noksr', output='screen',
                prefix=[sys.executable], exec_name='noksr_node', sigterm_timeout='35',
                parameters=[LaunchConfiguration('params_file'), overrides])
    rviz = Node(package='rviz2', executable='rviz2', name='rviz2', output='log',
                arguments=['-d', os.path.join(share, 'rviz', 'noksr.rviz')],
                parameters=[{'use_sim_time': ParameterValue(LaunchConfiguration('use_sim_time'),
                                                            value_type=bool)}],
                condition=IfCondition(LaunchConfiguration('rviz')))
    if NotEqualsSubstitution is not None:
        has_bag = IfCondition(NotEqualsSubstitution(LaunchConfiguration('bag'), ''))
    else:
        has_bag = LaunchConfigurationNotEquals('bag', '')
    player = ExecuteProcess(
        cmd=[sys.executable, '-m', 'noksr_ros.cli.main', 'play', LaunchConfiguration('bag'),
             '--wait-for', LaunchConfiguration('lidar_topic')],
        name='noksr_play', output='screen', condition=has_bag)
    return LaunchDescription([*arguments, node, rviz, player])
