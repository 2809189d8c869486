"""framebus capture node: cameras in, newest JPEG frames out over ZeroMQ."""
