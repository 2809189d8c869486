"""`python -m framebus.capture_node`. Spawned camera processes import this module too (as __mp_main__):
they must not run the node, so everything happens under the __main__ check."""

if __name__ == "__main__":
    from framebus.common.entry import capture_node

    capture_node()
