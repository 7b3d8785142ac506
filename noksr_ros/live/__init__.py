"""ROS-free live pipeline: poses arriving on topics, a bounded scan queue, the worker thread."""
