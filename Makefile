# popper: `make` builds, `make check` tests, `make demo` shows it working.
PYTHON ?= python3
VENV ?= .venv
DEMO ?= /tmp/popper-demo
PORT ?= 1110

.PHONY: all build check lint demo bench soak install uninstall clean distclean

all: build

# configure.py newer than its output: run it again with the same switches.
popper/_settings.py: configure.py
	if [ -x config.status ]; then ./config.status; else $(PYTHON) configure.py; fi

# What configure.py wrote: $$($(SETTING) NAME) in a recipe.
SETTING = $(PYTHON) -c "import runpy, sys; print(runpy.run_path('popper/_settings.py')[sys.argv[1]])"

# The extension in place, for running from the checkout, built by the
# interpreter configure.py chose (PYTHON=), which installs and runs popper too.
build: popper/_settings.py
	@python=$$($(SETTING) PYTHON) && \
	if grep -q '^NATIVE = True' popper/_settings.py; then \
	    "$$python" _native/build_native.py >/dev/null; fi && \
	if grep -q '^NATIVE_PAM = True' popper/_settings.py; then \
	    "$$python" _native/build_pam.py >/dev/null; fi

$(VENV)/bin/tox: tests/deps.sh
	PYTHON=$(PYTHON) tests/deps.sh $(VENV)

check:
	PYTHON=$(PYTHON) tests/deps.sh $(VENV)
	$(VENV)/bin/tox -e native,pure

lint: $(VENV)/bin/tox
	$(VENV)/bin/tox -e lint


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
	rm -rf build dist *.egg-info popper/_cpopper* popper/*.o _native/*.o
	find . -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .tox popper/_settings.py config.log config.status
