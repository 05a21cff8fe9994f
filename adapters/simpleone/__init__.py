"""SimpleOne ITSM adapter (its emulator lives in emulators/simpleone).

client.py          SimpleOneClient: the engine's TicketSystem port over aiohttp (+ generic Table API calls)
transport.py       the HTTP transport: TLS, connection caps, timeouts, no proxies
records.py         Table API records -> Person / Ticket
journal.py         sys_activity_feed_item records -> Comment (public entries only)
html_text.py       a comment's HTML (an agent's rich-text editor) -> plain text
"""
