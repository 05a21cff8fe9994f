"""The web adapters: `supportbot studio`, a page for support leads to see, check and try the flows."""
