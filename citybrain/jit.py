"""The one JIT decorator every kernel uses.

Kernels are pure functions over preallocated numpy arrays: no allocation, I/O or
logging inside. `cache=True` keeps compiled code on disk so a new process does
not pay the compile again.
"""
from __future__ import annotations

import numba

__all__ = ["jit"]


def jit(function):
    return numba.njit(cache=True, nogil=True, boundscheck=False)(function)
