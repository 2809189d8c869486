import sys

from capture_node.cli import main

sys.exit(main())
