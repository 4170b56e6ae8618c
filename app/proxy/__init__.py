"""The proxy: token check, upstream URL, streaming forward (`views`), outgoing pool (`upstream`)."""
