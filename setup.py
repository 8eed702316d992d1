"""Maps each top-level folder to a ``soko.<folder>`` package.

The folders live at the top of the repository (``ring/`` is ``soko.ring``), which a static
``[tool.setuptools.package-dir]`` table can express only by listing every subpackage by
hand; computing the list here keeps new subpackages from being silently left out.
"""

from setuptools import find_packages, setup

AREAS = ["common", "identity", "ring", "object", "block", "image", "compute", "net", "tools"]

packages = []
for area in AREAS:
    packages.append(f"soko.{area}")
    packages += [f"soko.{area}.{sub}" for sub in find_packages(area)]

setup(
    packages=packages,
    package_dir={f"soko.{area}": area for area in AREAS},
    package_data={"soko.tools": ["*.sh"]},
)
