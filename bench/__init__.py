"""Load scenarios of userapi against a bare-ASGI floor (`make bench`); see bench/README.md."""
