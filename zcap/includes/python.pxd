# CPython C-API declarations that Cython's own cpython/*.pxd do not provide.
from cpython.object cimport PyObject

cdef extern from "Python.h":
    # the reference count of a raw object pointer (_ring.pyx: does anything
    # but the ring still hold an issued packet or column?)
    Py_ssize_t Py_REFCNT(PyObject *o)

    # the am_send slot (Python >= 3.10), which _aio.pxi implements so that an
    # await on a ready ring completes in one C call
    ctypedef enum PySendResult:
        PYGEN_RETURN
        PYGEN_ERROR
        PYGEN_NEXT
    ctypedef PySendResult (*sendfunc)(PyObject *iter, PyObject *value, PyObject **result)
    ctypedef struct PyAsyncMethods:
        sendfunc am_send
    ctypedef struct PyTypeObject:
        PyAsyncMethods *tp_as_async

    # Raw references, so that a bytes object can be filled and then shrunk to
    # fit with _PyBytes_Resize (CPython's own way) while we hold the only one
    # (compat/_fast.pyx).
    PyObject *_new_bytes "PyBytes_FromStringAndSize"(const char *, Py_ssize_t)
    char *_bytes_data "PyBytes_AS_STRING"(PyObject *)
    void _xdecref "Py_XDECREF"(PyObject *)
    int _PyBytes_Resize(PyObject **string, Py_ssize_t newsize) except -1
