"""A subscriber whose bounded queue fills and outlives its connection, read right as the next
connection is being made: libzmq 4.3.5 aborts the process there (`Assertion failed:
_input_stopped`, libzmq #3937) unless the socket drops its queue with the connection (IMMEDIATE).
Run as its own process (an abort cannot be caught):

    python tests/support/full_queue_probe.py --reconnects 10 [--plain]

--plain makes the subscriber without common.sockets (no IMMEDIATE), to show the abort. Prints
`probe: reconnect N survived` after each reconnect, then `probe: done`.
"""

from __future__ import annotations

import argparse
import threading

import zmq

from framebus.common.sockets import StreamOptions, _liveness, connect_frame_subscriber

QUEUE = 8


def publisher(ctx: zmq.Context, stop: threading.Event) -> str:
    """A lossless (XPUB_NODROP) stream that sends as fast as the subscriber takes."""
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.XPUB_NODROP, 1)
    pub.setsockopt(zmq.SNDHWM, QUEUE)
    _liveness(pub, None)
    port = pub.bind_to_random_port("tcp://127.0.0.1")

    def run() -> None:
        while not stop.is_set():
            if pub.poll(10, zmq.POLLOUT):
                try:
                    pub.send(b"x" * 100, zmq.NOBLOCK)
                except zmq.Again:
                    pass
            while pub.poll(0, zmq.POLLIN):
                pub.recv()
        pub.close(0)

    threading.Thread(target=run, daemon=True).start()
    return f"tcp://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reconnects", type=int, default=10)
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    ctx = zmq.Context()
    stop = threading.Event()
    endpoint = publisher(ctx, stop)
    if args.plain:
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, QUEUE)
        _liveness(sub, None)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        monitor = sub.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
        sub.connect(endpoint)
    else:
        options = StreamOptions(every_frame=True, queue_frames=QUEUE)
        holder: list[zmq.Socket] = []
        sub = connect_frame_subscriber(
            ctx,
            endpoint,
            options,
            before_connect=lambda s: holder.append(s.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)),
        )
        monitor = holder[0]

    def wait_for(event: int) -> None:
        """Without reading a message; the socket still handles libzmq's commands (as a worker's poll does)."""
        while True:
            sub.getsockopt(zmq.EVENTS)
            if monitor.poll(10) and monitor.recv_multipart()[0][:2] == event.to_bytes(2, "little"):
                return

    for n in range(1, args.reconnects + 1):
        # Not reading: the queue fills, libzmq stops reading the connection, the peer's heartbeat
        # gives up on it (~2 s) and the subscriber connects again.
        wait_for(zmq.EVENT_DISCONNECTED)
        wait_for(zmq.EVENT_CONNECTED)
        while sub.poll(0, zmq.POLLIN):  # the next connection is handshaking: read the full queue now
            sub.recv()
        print(f"probe: reconnect {n} survived", flush=True)
    stop.set()
    print("probe: done", flush=True)


if __name__ == "__main__":
    main()
