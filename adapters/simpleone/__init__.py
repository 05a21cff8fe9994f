"""SimpleOne ITSM adapter (its emulator lives in emulators/simpleone).

client.py          SimpleOneClient: the engine's TicketSystem port over httpx (+ generic Table API calls)
records.py         Table API records -> Person / Ticket
"""
