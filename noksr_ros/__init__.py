"""noksr_ros: incremental NoKSR surface reconstruction from LiDAR, with a thin ROS 2 front end."""

import os as _os
from pkgutil import extend_path as _extend_path

# The generated messages (noksr_ros.msg) live in another directory in the pip set-up
# (.venv/lib/noksr_ros_interfaces, put on sys.path by a .pth file): merge that one in. Other
# copies of the package on sys.path (the pip-installed one, seen from the source tree) stay out,
# so a module is always taken from this directory.
__path__ = [p for p in _extend_path(__path__, __name__)
            if p == __path__[0] or _os.path.isdir(_os.path.join(p, 'msg'))]

__version__ = '0.1.0'
