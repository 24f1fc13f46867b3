"""Build the Cython extensions; everything else is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        name,
        [f"{name.replace('.', '/')}.pyx"],
        include_dirs=["zcap/includes"],
        # Cython's `inline` is only a hint to gcc, which declines it for the
        # block walker; the per-packet path depends on it being inlined.
        define_macros=[("CYTHON_INLINE", "inline __attribute__((always_inline))")],
        extra_compile_args=["-O2", "-Wno-unused-function"],
    )
    for name in ("zcap._ring", "zcap._tx", "zcap._testbed", "zcap._bpf", "zcap._headers",
                 "zcap._records", "zcap.compat._fast")
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
    ),
    # gcc on the seven generated C files is most of a build (_ring.c and _headers.c
    # take about half of it): compile them side by side, one per CPU.  `-j N` on the
    # command line still overrides this.
    options={"build_ext": {"parallel": True}},
)
