"""ROS 2 front end of noksr_ros: message encoding and nodes (needs rclpy only where noted)."""
