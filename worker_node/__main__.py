"""`python -m framebus.worker_node`. Spawned processes import this module too (as __mp_main__):
they must not run the worker, so everything happens under the __main__ check."""

if __name__ == "__main__":
    from framebus.common.entry import worker_node

    worker_node()
