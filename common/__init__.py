"""What capture and worker nodes share: wire protocol, sockets, JPEG, small utilities."""
