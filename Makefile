# The developer entry points. `make run` and `make test` start from a fresh clone.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv from PATH, else a private copy in .tools/ installed on first use.
UV := $(or $(shell command -v uv 2>/dev/null),$(CURDIR)/.tools/bin/uv)
export UV_PYTHON_DOWNLOADS ?= never
RUN := $(UV) run --frozen --no-sync

.PHONY: help install run test lint typecheck pytest bench soak clean-data screenshots

help:
	@echo "make run    install, migrate and serve the API on http://127.0.0.1:8000 (embedded database)"
	@echo "make test   install and run the whole suite (ruff, mypy, import contracts, pytest)"
	@echo "make bench  benchmarks (bench/), make soak  long mixed-load run"

$(CURDIR)/.tools/bin/uv:
	@scripts/bootstrap-uv

# Bytecode compiled at install: where PYTHONDONTWRITEBYTECODE is set (as on our CI machines) nothing
# would ever cache it, and every process (each test worker, CLI run and server) would compile the
# dependencies again, about 2.5 s of CPU each here. uv skips what is already compiled.
install: $(UV)
	@$(UV) sync --frozen --quiet --compile-bytecode

# A development .env with random secrets, written once and never committed.
.env:
	@umask 077; printf 'ENVIRONMENT=development\nJWT_SECRET=%s\nKEY_ENCRYPTION_SECRET=%s\n' \
	  "$$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" \
	  "$$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" > .env
	@echo "wrote .env with a random JWT_SECRET and KEY_ENCRYPTION_SECRET (git-ignored)"

# An older .env gains the secrets it lacks. KEY_ENCRYPTION_SECRET only while no key is sealed yet:
# a new one would not open the keys an earlier run stored, so then the development default stays.
run: install .env
	@grep -q '^JWT_SECRET=.' .env || { umask 077; echo "JWT_SECRET=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" >> .env; }
	@grep -q '^KEY_ENCRYPTION_SECRET=' .env || [ -d .data/postgres ] || { umask 077; echo "KEY_ENCRYPTION_SECRET=$$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')" >> .env; }
	@$(RUN) userapi migrate
	@$(RUN) userapi serve

lint: install
	$(RUN) ruff check src tests bench
	$(RUN) ruff format --check src tests bench

typecheck: install
	$(RUN) mypy src
	$(RUN) lint-imports

pytest: install
	$(RUN) pytest

test: lint typecheck pytest

# Load scenarios against a bare-ASGI floor (bench/README.md); BENCH_ARGS=--quick for a smoke run.
bench: install
	$(RUN) python -m bench.jwt_algorithms
	$(RUN) python -m bench.run $(BENCH_ARGS)

# Mixed load for SOAK_SECONDS (300) against SOAK_WORKERS (2) workers; fails on unexpected statuses,
# memory or connection growth (bench/soak.py). Outside CI.
soak: install
	$(RUN) python -m bench.soak

# The web console's screenshots in docs/, taken in Chromium from the real pages (tests/web).
screenshots: install
	UPDATE_SCREENSHOTS=1 $(RUN) pytest -n 0 -q tests/web/test_screenshots.py

clean-data:
	-$(RUN) userapi db stop
	rm -rf .data
