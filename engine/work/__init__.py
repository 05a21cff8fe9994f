"""Work after the dialogue: the outbox to SimpleOne, status watch and notices, leases."""
