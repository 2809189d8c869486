import sys

from worker_node.cli import main

sys.exit(main())
