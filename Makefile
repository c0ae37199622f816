# popper: `make` builds, `make check` tests, `make demo` shows it working.
PYTHON ?= python3
VENV ?= .venv
DEMO ?= /tmp/popper-demo
PORT ?= 1110

.PHONY: all build check lint demo bench soak install clean distclean

all: build

popper/_settings.py: configure.py
	$(PYTHON) configure.py

# The extension in place, for running from the checkout.
build: popper/_settings.py
	@if grep -q '^NATIVE = True' popper/_settings.py; then \
	    $(PYTHON) _native/build_native.py >/dev/null; fi
	@if grep -q '^NATIVE_PAM = True' popper/_settings.py; then \
	    $(PYTHON) _native/build_pam.py >/dev/null; fi

$(VENV)/bin/tox: tests/deps.sh
	PYTHON=$(PYTHON) tests/deps.sh $(VENV)

check:
	PYTHON=$(PYTHON) tests/deps.sh $(VENV)
	$(VENV)/bin/tox -e native,pure

lint: $(VENV)/bin/tox
	$(VENV)/bin/tox -e lint

# Installs under configure.py's --prefix: the program and its manual page.
SETTING = $(PYTHON) -c "import runpy, sys; print(runpy.run_path('popper/_settings.py')[sys.argv[1]])"

# The benchmark (bench/README.md): 10,000 messages unless MESSAGES says otherwise.
MESSAGES ?= 10000
bench: build
	$(PYTHON) -m bench.harness --messages $(MESSAGES)

# At length: the random kill -9 suite, TRIALS trials in each mode
# (tests/test_crash.py), and the faults at every call instead of make check's
# subset (tests/test_faults.py); both run, either failing fails.
TRIALS ?= 500
soak: build
	POPPER_CRASH_TRIALS=$(TRIALS) $(PYTHON) -m pytest -q -s tests/test_crash.py -k kill; \
	crash=$$?; \
	POPPER_FAULTS_FULL=1 $(PYTHON) -m pytest -q -rf tests/test_faults.py; \
	faults=$$?; \
	test $$crash = 0 && test $$faults = 0

install: popper/_settings.py
	prefix=$$($(SETTING) PREFIX) && \
	$(PYTHON) -m pip install --prefix "$$prefix" . && \
	install -D -m 644 docs/popper.8 "$$prefix/share/man/man8/popper.8"

demo: $(VENV)/bin/tox
	$(VENV)/bin/pip install -q .
	cd /tmp && $(CURDIR)/$(VENV)/bin/python $(CURDIR)/tests/demo.py --dir $(DEMO) --port $(PORT) --popper $(CURDIR)/$(VENV)/bin/popper

# The SVR4 package for legacy hosts (docs/packaging.md): dist/popper.pkg for
# pkgadd -d, dist/popper-odc.pkg and dist/popper.tar for an old cpio.
# PKG_PYTHON is the target's interpreter, named by /etc/popper's #! line;
# PKG_SPOOL_DIR its mail spool; PKG_DIST where the package goes.
PKG_PYTHON ?= /usr/local/bin/python3
PKG_SPOOL_DIR ?= /usr/spool/mail
PKG_DIST ?= dist
.PHONY: package
package:
	$(PYTHON) packaging/sco/build.py --python $(PKG_PYTHON) --spool-dir $(PKG_SPOOL_DIR) \
	    --out $(PKG_DIST)

clean:
	rm -rf build dist *.egg-info popper/_cpopper* popper/*.o _native/*.o
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .tox popper/_settings.py config.log config.status
