"""The proxy: its route (`views`), its phases (`phases`, over a `call.Call`), request rewriting
(`forward`), the way out to the providers (`upstream`, with the silence sweep in `silence`)."""
