"""Build the Cython extensions; everything else is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        name,
        [f"{name.replace('.', '/')}.pyx"],
        include_dirs=["zcap/includes"],
        extra_compile_args=["-O2", "-Wno-unused-function"],
    )
    for name in ("zcap._ring", "zcap._tx")
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
    ),
)
