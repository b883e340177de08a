r"""Fisher information and Cramer-Rao bounds for signal-in-white-noise tasks.

For data ``x_i = h(phi; t_i) + n_i`` with ``n_i ~ N(0, sigma^2)`` and ``phi = (theta, shift)``,
the Fisher information is

.. math::

    F_{ab}(\phi) = \frac{1}{\sigma^2} \sum_i \partial_a h(\phi; t_i)\, \partial_b h(\phi; t_i),

computed here with forward-mode autograd of the task's noise-free waveform. Split ``F`` into the
intrinsic block ``F_tt``, the nuisance block ``F_ss`` and the cross term ``F_ts``:

* nuisance known: the bound on ``theta`` is ``sqrt(diag(F_tt^{-1}))``;
* nuisance unknown (profiled): the effective information is the Schur complement
  ``F_tt - F_ts F_ss^{-1} F_st`` (never larger than ``F_tt`` in the Loewner order), so the
  profiled bound is never smaller than the known-nuisance one;
* ``conditional=True`` gives ``1 / sqrt(F_ii)``, the width of each parameter with every other
  parameter known. This is what the closed forms of the symmetry-embedding paper's appendix
  (Eqs. 5a-5d) are: they neglect the correlation between the two intrinsic parameters.

The damped oscillator jumps from 0 to 1 at switch-on; that jump pins the shift to about one
sample, information no derivative sees (the model is not regular there). Autograd differentiates
the smooth part only, so profiling the shift out removes too much: at theta = (1.2, 0.2), shift
0.537, the profiled bound on w0 is 0.051, the known-shift one 0.034, and the exact posterior's
std of w0 (shift marginalised, beta free) was 0.028-0.044 over six noise draws (mean 0.037),
every one below the profiled "bound". Tasks with such a jump (``onset_jump``) report the
known-shift bound by default: a true lower bound (knowing the shift cannot hurt), and a tight
one where the jump pins the shift.

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import SineGaussian
    >>> task = SineGaussian()
    >>> theta, shift = torch.tensor([[0.5, 2.0]]), torch.tensor([[0.3]])
    >>> known = cramer_rao_bound(task, theta, shift, nuisance_known=True)
    >>> profiled = cramer_rao_bound(task, theta, shift)
    >>> bool((profiled >= known).all())
    True
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from sbi_symmetry.reference.protocol import SignalModel


def fisher_information(task: SignalModel, theta: Tensor, nuisance: Tensor) -> Tensor:
    """Fisher information matrix of ``(theta, shift)`` at each row.

    Args:
        task: A signal-in-white-noise task.
        theta: Intrinsic parameters, shape ``(n, theta_dim)``.
        nuisance: Shifts, shape ``(n, 1)``.

    Returns:
        Float64 tensor of shape ``(n, theta_dim + 1, theta_dim + 1)``; the last index is the shift.
    """
    if not isinstance(task, SignalModel):
        raise TypeError(
            f"`task` must be a SignalInNoiseTask (white Gaussian noise on a time grid); got "
            f"{type(task).__name__}."
        )
    theta = task._check_theta(theta)
    nuisance = task._check_nuisance(nuisance, theta.shape[0])
    params = torch.cat([theta, nuisance], dim=-1).double()
    times = task.times.double()
    dim = task.theta_dim

    def waveform(row: Tensor) -> Tensor:
        return task.waveform(row[:dim], times - row[dim:])

    jac = torch.func.vmap(torch.func.jacfwd(waveform))(params)  # (n, L, dim + 1)
    return jac.transpose(-1, -2) @ jac / task.noise_std**2


def cramer_rao_bound(
    task: SignalModel,
    theta: Tensor,
    nuisance: Tensor,
    *,
    nuisance_known: bool = False,
    conditional: bool = False,
) -> Tensor:
    """Lower bound on the standard deviation of each intrinsic parameter.

    Args:
        task: A signal-in-white-noise task.
        theta: Intrinsic parameters, shape ``(n, theta_dim)``.
        nuisance: Shifts, shape ``(n, 1)``.
        nuisance_known: Treat the shift as known; otherwise it is profiled out with the Schur
            complement.
        conditional: Return ``1 / sqrt(F_ii)`` of the (effective) information, i.e. each
            parameter's width with the other intrinsic parameters known (the paper's Eqs. 5).

    Returns:
        Float64 tensor of shape ``(n, theta_dim)``.

    Raises:
        ValueError: If the data carry no information on some parameter at a row (a singular
            Fisher matrix, e.g. a signal of zero amplitude): no finite bound exists there.

    Rows outside the task's prior support get a bound (it is a property of the model) and a
    warning: there the posterior is shaped by the prior, not by the bound.
    """
    fisher = fisher_information(task, theta, nuisance)
    dim = task.theta_dim
    info = fisher[:, :dim, :dim]
    if not nuisance_known:
        cross = fisher[:, :dim, dim:]
        _refuse_singular(fisher[:, dim:, dim:], "the shift")
        info = info - cross @ torch.linalg.solve(fisher[:, dim:, dim:], cross.transpose(-1, -2))
    _refuse_singular(info, "theta")
    _warn_outside_prior(task, theta)
    if conditional:
        return info.diagonal(dim1=-2, dim2=-1).rsqrt()
    return torch.linalg.inv(info).diagonal(dim1=-2, dim2=-1).sqrt()


def _refuse_singular(info: Tensor, what: str) -> None:
    """Raise if an information matrix is not positive definite (to working precision)."""
    scale = info.diagonal(dim1=-2, dim2=-1).abs().amax(-1, keepdim=True).clamp_min(1e-300)
    _, status = torch.linalg.cholesky_ex(info / scale.unsqueeze(-1))
    eig_min = torch.linalg.eigvalsh(info / scale.unsqueeze(-1)).amin(-1)
    bad = (status != 0) | (eig_min < 1e-12)
    if bad.any():
        rows = bad.nonzero().flatten().tolist()
        raise ValueError(
            f"The data carry (almost) no information on {what} at row(s) {rows[:10]} of "
            "`theta`/`nuisance` (singular Fisher matrix, e.g. a signal of zero amplitude or one "
            "that leaves the time window): no finite Cramer-Rao bound exists there."
        )


def _warn_outside_prior(task: SignalModel, theta: Tensor) -> None:
    support = getattr(getattr(task, "prior", None), "support", None)
    if support is None:
        return
    inside = support.check(theta.to(torch.float32))
    if not bool(inside.all()):
        rows = (~inside).nonzero().flatten().tolist()
        warnings.warn(
            f"Row(s) {rows[:10]} of `theta` lie outside the task's prior: the bound holds for "
            "the model, but a posterior there is shaped by the prior's edge, not by the data.",
            UserWarning,
            stacklevel=3,
        )
