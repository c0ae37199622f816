"""Build and install popper: `pip install .` (or `make`, see the Makefile).

configure.py's settings decide what is built: it is run here with its
defaults when it has not been run, as a fresh clone needs.
"""

import os
import runpy
import subprocess
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS = os.path.join(HERE, "popper", "_settings.py")

# What configure.py writes.  Written here, they are removed when setup() is
# done: left in the checkout they would name pip's or tox's throw-away build
# interpreter, which make and make install would then use.
CONFIGURED = [SETTINGS] + [os.path.join(HERE, name) for name in ("config.status", "config.log")]
ours = [] if os.path.exists(SETTINGS) else [p for p in CONFIGURED if not os.path.exists(p)]
if ours:      # probed for this interpreter, whatever $PYTHON says
    subprocess.check_call([sys.executable, os.path.join(HERE, "configure.py"), "-q",
                           "PYTHON=" + sys.executable], cwd=HERE)
settings = runpy.run_path(SETTINGS)
native = settings["NATIVE"]
# The compiled modules (_native/modules.py's table) configure.py asked for.
builders = [module.cffi_module
            for module in runpy.run_path(os.path.join(HERE, "_native", "modules.py"))["MODULES"]
            if settings.get(module.setting)]
version = runpy.run_path(os.path.join(HERE, "popper", "__init__.py"))["__version__"]

try:
    setup(
        name="popper",
        version=version,
        description="A faithful Python re-implementation of Qualcomm's Qpopper POP3 server",
        long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
        long_description_content_type="text/markdown",
        license="BSD-3-Clause",
        python_requires=">=3.6",
        packages=find_packages(include=["popper", "popper.*"]),
        # python-pam: PAM when popper._cpam is not built (no PAM headers, or pure).
        # Before Python 3.11 pip picks python-pam 2.0.x, which imports six
        # without declaring it.
        install_requires=(["cffi>=1.12"] if native else []) + [
            "python-pam>=2", 'six; python_version < "3.11"'],
        cffi_modules=builders,
        entry_points={"console_scripts": ["popper = popper.cli:main",
                                            "popauth = popper.popauth:main"]},
        zip_safe=False,
    )
finally:
    for path in ours:
        if os.path.exists(path):
            os.unlink(path)
