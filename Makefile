# make test  : install what is missing (apt packages, npm ci), build, lint (npm run lint: eslint and
#              prettier --check), run every test
# make lint  : eslint (type-checked rules) and prettier --check; npm run format applies prettier
# make run   : install, build, provision development SoftHSM2 tokens and config under $KMS_DATA_DIR
#              (default ./var), then serve the API on 127.0.0.1:$KMS_PORT (default 8080) and /metrics,
#              /readyz on the operations listener 127.0.0.1:$KMS_OPS_PORT (default the API port + 1)
# make bench : HSM-layer and KMS-core benchmarks (npm run bench:hsm, npm run bench:kms)
# make soak  : the resilience tests' longer variants (KMS_SOAK=1): three 20 s Redis outages, 20,000
#              requests per HSM member loss (three losses), ten kill -9 of the server, two minutes of
#              saturated shared pool; one file at a time so the figures are not disturbed
SHELL := /bin/bash
APT_PACKAGES := softhsm2 libnss3 libnss3-tools opensc redis-server opencryptoki redis-sentinel haproxy awscli chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps build lint test run bench soak clean

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then npm ci --no-audit --no-fund; fi

build: deps
	npx tsc -p tsconfig.json
	@chmod +x dist/src/cli/kmsctl.js
	@mkdir -p node_modules/.bin && ln -sf ../../dist/src/cli/kmsctl.js node_modules/.bin/kmsctl

lint: deps
	npm run lint

# --forceExit: a server closed while its Redis is away leaves an ioredis reconnect timer behind in the
# test process (the server's own process exits after close)
test: build lint
	@rm -f dist/jest-results.json
	npx jest --forceExit --json --outputFile=dist/jest-results.json; status=$$?; \
	node -e 'const r=require("./dist/jest-results.json");console.log(`$${r.numPassedTests} passed, $${r.numFailedTests} failed`)'; \
	exit $$status

KMS_DATA_DIR ?= ./var
export KMS_DATA_DIR

run: build
	node dist/src/cli/kmsctl.js init --dev --data-dir "$(KMS_DATA_DIR)"
	node dist/src/main.js --data-dir "$(KMS_DATA_DIR)"

bench: build
	node dist/scripts/bench-hsm.js
	node dist/scripts/bench-kms.js

soak: build
	KMS_SOAK=1 npx jest --forceExit --runInBand dist/test/e2e/resilience-

clean:
	rm -rf dist
