"""``python -m coarse_loftr_ros.node``: runs the matcher node (``coarse_loftr_ros.ros.node``).

Kept at this path for users and launch files; the node itself lives in ``ros/node.py``.
"""

import sys

from .ros.node import main

if __name__ == "__main__":
    sys.exit(main())
