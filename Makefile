# The two commands a newcomer needs:
#   make run   installs what is missing, builds, starts the local platform
#   make test  installs what is missing, builds, runs every test
# Everything else here is a building block of those two.

SHELL := /bin/bash
JOBS ?= $(shell nproc)

.PHONY: all deps build run test test-unit test-asan test-e2e fuzz bench format format-check lint clean

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j $(JOBS)

run: build
	@scripts/run-local

test: deps
	@scripts/run-tests

bench: build
	@scripts/run-bench

fuzz: deps
	@scripts/run-fuzz 60

format:
	@git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

format-check:
	@git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror

lint: build
	@scripts/run-tidy

clean:
	@rm -rf build
