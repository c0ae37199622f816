# popper: `make` builds, `make test` runs the fast tests, `make check` all of
# them, `make demo` shows it working.
PYTHON ?= python3
VENV ?= .venv
DEMO ?= /tmp/popper-demo
PORT ?= 1110

.PHONY: all build check test lint demo bench bench-tls soak install uninstall clean distclean

all: build

# configure.py newer than its output: run it again with the same switches.
popper/_settings.py: configure.py
	if [ -x config.status ]; then ./config.status; else $(PYTHON) configure.py; fi

# What configure.py wrote: $$($(SETTING) NAME) in a recipe.
SETTING = $(PYTHON) -c "import runpy, sys; print(runpy.run_path('popper/_settings.py')[sys.argv[1]])"

# The compiled modules configure.py asked for (_native/modules.py), in place,
# for running from the checkout, built by the interpreter configure.py chose
# (PYTHON=), which installs and runs popper too.
build: popper/_settings.py
	@"$$($(SETTING) PYTHON)" _native/build.py >/dev/null

$(VENV)/bin/tox: tests/deps.sh
	PYTHON=$(PYTHON) tests/deps.sh $(VENV)

# Everything, through tox (tox.ini says what each environment runs), on the
# interpreters tests/deps.sh found.
check:
	PYTHON=$(PYTHON) tests/deps.sh $(VENV)
	PATH="$(abspath $(VENV))/pythons:$$PATH" $(VENV)/bin/tox -e "$$(cat $(VENV)/envs)"

# The fast lane: the in-process tests, from the checkout, in seconds.
FAST = not slow and not root and not clients
test: build
	@python=$$($(SETTING) PYTHON) && \
	if ! "$$python" -c "import pytest" 2>/dev/null; then \
	    echo "make test needs pytest for $$python: $$python -m pip install pytest" \
	         "(or apt-get install python3-pytest)"; exit 1; fi && \
	"$$python" -m pytest -q -p no:cacheprovider -m "$(FAST)" tests

lint: $(VENV)/bin/tox
	$(VENV)/bin/tox -e lint


# The benchmark (bench/README.md): popper standalone, under inetd and -S beside
# popa3d and Dovecot, 10,000 messages unless MESSAGES says otherwise, ROUNDS
# rounds.  bench/deps.sh (root, Debian) sets the peers up; make check never
# needs them, and without them the table has popper's columns only.
MESSAGES ?= 10000
ROUNDS ?= 3
bench: build
	-bench/deps.sh
	$(PYTHON) -m bench.harness --compare --messages $(MESSAGES) --reps $(ROUNDS)

# RETR over TLS beside plaintext, popper beside a private Dovecot (bench/tls.py);
# bench/deps.sh installs Dovecot, which make check never needs.
bench-tls: build
	bench/deps.sh
	$(PYTHON) -m bench.tls --messages $(MESSAGES)

# At length: the random kill -9 suite, TRIALS trials in each mode
# (tests/test_crash.py), and the faults at every call instead of make check's
# subset (tests/test_faults.py, and a bulletin login's in tests/test_bulletins.py);
# both run, either failing fails.
TRIALS ?= 500
soak: build
	POPPER_CRASH_TRIALS=$(TRIALS) $(PYTHON) -m pytest -q -s tests/test_crash.py -k kill; \
	crash=$$?; \
	POPPER_FAULTS_FULL=1 $(PYTHON) -m pytest -q -rf tests/test_faults.py \
	    tests/test_bulletins.py::test_kill_at_every_write_of_a_bulletin_login_delivers_it_once; \
	faults=$$?; \
	test $$crash = 0 && test $$faults = 0

# At configure.py's directories, staged under DESTDIR if given; what it
# wrote is listed in LIBDIR/popper/INSTALLED, which uninstall goes by
# (packaging/install.py).
install: build
	@"$$($(SETTING) PYTHON)" packaging/install.py install --destdir "$(DESTDIR)"

uninstall: popper/_settings.py
	@"$$($(SETTING) PYTHON)" packaging/install.py uninstall --destdir "$(DESTDIR)"

demo:
	DEPS=build PYTHON=$(PYTHON) tests/deps.sh $(VENV)
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
	rm -rf build dist *.egg-info popper/_c*.c popper/_c*.so popper/*.o _native/*.o
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .tox popper/_settings.py config.log config.status
