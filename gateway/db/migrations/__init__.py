"""The schema history, one Tortoise migration per change (`tortoise makemigrations`);
`tests/db/test_migrations.py` fails when the models change without one."""
