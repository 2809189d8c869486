import sys

from capture_node.cli import main

if __name__ == "__main__":  # also imported by spawned camera processes
    sys.exit(main())
