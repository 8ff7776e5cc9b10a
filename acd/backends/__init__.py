from acd.backends.base import Backend, GenRequest, GenResult, make_backend, register

__all__ = ["Backend", "GenRequest", "GenResult", "make_backend", "register"]
