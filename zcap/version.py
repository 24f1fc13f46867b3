"""zcap's version (one home: zcap.__version__, the savefile writer and `zcap --version` read it)."""

__version__ = "0.1.0"
