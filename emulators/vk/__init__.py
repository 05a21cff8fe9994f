"""The fake VK API server (`python -m emulators.vk --port 8091`).

server.py    aiohttp routes and the gate: start_vk_emulator(), serve_forever()
state.py     the community's messages, tokens, rate limit and hosted files
longpoll.py  the Bots Long Poll update log
callback.py  Callback API delivery to the bot
keyboard.py  keyboard parsing as VK checks it
users.py     scripted users and chats that talk to the bot
faults.py    its fault switches
"""
