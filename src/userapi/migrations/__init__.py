"""Alembic environment and revisions, shipped in the package so an installed service can migrate."""
