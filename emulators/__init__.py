"""Test and demo doubles of the outside world: SimpleOne and VK servers on loopback, mail sinks.

Used by `supportbot chat` and `flowlint test` (through supportbot/demo.py only), the tests and
the benchmarks; never by the production adapters.

mail_sink.py     mailers that deliver to a terminal or a list
simpleone/       the SimpleOne REST API emulator
vk/              the fake VK API server (method API, long poll, callback delivery, files)
"""
