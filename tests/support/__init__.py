"""What the tests share: processes, hosts, servers, pictures, wire messages."""
