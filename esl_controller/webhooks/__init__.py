"""Server messages (pure builders), request signing, targets and URL policy; durable delivery lives
beside them in the I/O modules."""
