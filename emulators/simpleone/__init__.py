"""The SimpleOne REST API emulator (`python -m emulators.simpleone --port 8090`).

server.py   aiohttp routes and the gate: start_emulator(), serve_forever()
state.py    the emulator's tables, journals, attachments and tokens
faults.py   its fault switches
query.py    the sysparm_query parser and evaluator it filters and sorts with
"""
