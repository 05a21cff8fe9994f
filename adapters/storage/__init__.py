"""Storage adapters: the Storage port on SQLite (embedded) and on PostgreSQL (several workers).

Import the backend you use from its module (adapters.storage.sqlite, adapters.storage.postgres):
importing this package loads neither driver.
"""
