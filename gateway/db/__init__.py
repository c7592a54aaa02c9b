"""Storage: the Tortoise models, the database wiring and engines, and the migrations.

SQLite is the embedded default; PostgreSQL is what production runs.
"""
