"""Alembic migrations of modelloop's own database (`modelloop.db`, or MODELLOOP_DB_URL).

`MetadataDB` upgrades a database to the newest revision when it first connects; a database made
before migrations existed (its tables created directly) is recognised and stamped at the first
revision, then upgraded. A new table or column is a new file under `versions/`.
"""
