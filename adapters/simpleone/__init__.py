"""SimpleOne ITSM adapter.

client.py          SimpleOneClient: the engine's TicketSystem port over httpx (+ generic Table API calls)
records.py         Table API records -> Person / Ticket
query.py           sysparm_query parser and evaluator (used by the emulator)
emulator.py        aiohttp emulator of the REST API: routes, start_emulator(), serve_forever()
emulator_state.py  the emulator's tables, journals, attachments and tokens
emulator_faults.py the emulator's fault switches
"""
