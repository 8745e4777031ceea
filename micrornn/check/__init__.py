"""Gradient checks: central differences against the graph (``gradcheck``, ``gradgradcheck``), the
four-route table for recurrent models (``routes``) and the first point where routes part
(``divergence``)."""
from micrornn.check.finite_differences import GradcheckError, gradcheck, gradgradcheck, numerical_grad

__all__ = ["GradcheckError", "gradcheck", "gradgradcheck", "numerical_grad"]
