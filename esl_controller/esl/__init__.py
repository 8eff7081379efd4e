"""ESL layer: pure wire protocol and command builders, and the gevent I/O around them."""
