"""Test and demo doubles of the outside world: SimpleOne and VK servers on loopback, mail sinks.

Used by `supportbot chat` and `flowlint test` (through supportbot/demo.py only), the tests and
the benchmarks; never by the production adapters.

mail_sink.py         mailers that deliver to a terminal or a list
scratch_postgres.py  throwaway PostgreSQL databases for tests and benchmarks
faults.py            what both servers' fault switches share: rules, latency, outage, control
runner.py            what both servers share to run: loopback serving, dropped requests, CLI
simpleone/           the SimpleOne REST API emulator
vk/                  the fake VK API server (method API, long poll, callback delivery, files)
"""
