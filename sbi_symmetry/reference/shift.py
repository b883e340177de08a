r"""Exact marginalisation of a uniform time shift by FFT cross-correlation over sub-sample shifts.

For a :class:`~sbi_symmetry.tasks.SignalInNoiseTask` the data are
``x_i = h(theta; t_i - s) + n_i`` on ``t_i = t_0 + i dt`` (``i < L``), with white noise of standard
deviation ``sigma`` and a shift ``s ~ U(lo, hi)``. The shift-marginal likelihood is

.. math::

    p(x \mid \theta) = \frac{1}{hi - lo} \int_{lo}^{hi} p(x \mid \theta, s)\, ds, \qquad
    \log p(x \mid \theta, s) = c - \frac{\lVert x\rVert^2 - 2\langle x, h_s\rangle
    + \lVert h_s\rVert^2}{2\sigma^2},

with ``c = -L/2 log(2 pi sigma^2)`` (the same normalisation as ``task.log_likelihood``).

**Shift grid.** The shift axis is cut into cells whose edges are aligned with the sample
spacing: ``a = t_0 + n dt`` is the largest grid time ``<= lo``, and cell ``(k, j)`` (``k`` an
integer, ``j < M`` one of ``M`` sub-sample offsets) spans
``[a + (k + j/M) dt, a + (k + (j+1)/M) dt]`` with midpoint ``s_kj = a + (k + c_j) dt``,
``c_j = (j + 1/2)/M``. The integral is the midpoint rule
``sum_kj p(x | theta, s_kj) w_kj`` with ``w_kj`` = (length of the cell inside ``[lo, hi]``) /
``(hi - lo)``: partial cells at both ends are weighted by their covered fraction and cells
outside the support are dropped.

Why the edges are aligned: the damped oscillator switches on at ``u = t - s = 0``, so
``p(x | theta, s)`` jumps whenever ``s`` crosses a sample time ``t_i``. Between two consecutive
jumps it is smooth, and the edges ``a + k dt`` are exactly those jump points, so every midpoint
cell lies inside one smooth piece.

Choice of ``M``: for a smooth integrand (the sine-Gaussian away from the prior's ends) the
midpoint rule converges faster than any power of ``h = dt/M`` once ``h`` is below the width
``w`` of the shift posterior (error ~ ``exp(-2 pi^2 w^2 / h^2)``); ``w`` can be as small as
~0.01 for the sine-Gaussian, with ``dt ~ 0.04``. Where the integrand jumps (the oscillator's
switch-on at every ``t_i``, the prior's ends) each jump leaves an ``O(h^2)`` error. The default
``M = 16`` (``h = 0.0025`` and ``0.0035``) keeps that below ``1e-3`` in ``log Z``: on the
hardest cases found (a fast, weakly damped oscillator, ``w0 = 1.91, beta = 0.02``, and a pulse
at the prior's edge) ``log Z`` moved by ``2e-4`` between ``M = 16`` and ``M = 32`` and by
``7e-4`` between ``M = 8`` and ``16``; the tests check ``M`` against ``2M``.

**One correlation per offset.** With ``u_m = (t_0 - a) + (m - c_j) dt`` for
``m = -(K-1), ..., L-1`` the shifted signal is ``h_{s_kj}[i] = h(theta; u_{i-k})``, so one
waveform evaluation on this extended grid (``L + K - 1`` points) serves all ``K`` integer
shifts: ``<x, h_s>`` for every ``k`` is a single cross-correlation (``torch.fft.rfft`` /
``irfft`` with zero padding to ``N >= L + K - 1``, so nothing wraps around), and
``||h_s||^2`` is a sliding-window sum of ``h^2`` (the first window's sum plus the cumulative sum
of the values entering minus those leaving the window).

Example:
    >>> import torch
    >>> from sbi_symmetry.tasks import SineGaussian
    >>> task = SineGaussian()
    >>> g = torch.Generator().manual_seed(1)
    >>> x_o = task.simulate(torch.tensor([[0.5, 2.0]]), torch.tensor([[0.3]]), generator=g)
    >>> marginal = ShiftMarginal(task, x_o, num_offsets=8)
    >>> log_l = marginal(torch.tensor([[0.5, 2.0], [0.9, 1.5]], dtype=torch.float64))
    >>> bool(log_l[0] > log_l[1])
    True
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sbi_symmetry._threads import torch_threads
from sbi_symmetry._validation import check_int
from sbi_symmetry.reference.protocol import SignalModel, is_signal_model

#: Default number of sub-sample shift offsets per sample spacing.
DEFAULT_NUM_OFFSETS = 16


def _fast_fft_size(n: int) -> int:
    """Smallest integer ``>= n`` whose prime factors are 2, 3 and 5 (fast for pocketfft)."""
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


class ShiftMarginal:
    """Shift-marginal log-likelihood ``log p(x_o | theta)`` of a signal-in-noise task.

    Args:
        task: The task; its nuisance must be a single uniform time shift.
        x_o: One observation, shape ``(L,)`` or ``(1, L)``.
        num_offsets: Number ``M`` of sub-sample shift cells per sample spacing ``dt``.
        num_threads: torch intra-op threads while evaluating (restored afterwards); ``None``
            leaves torch's setting alone. The work comes in small cache-sized chunks, for
            which one thread is fastest (two threads were 2-9 times slower on a busy 2-core
            machine).
        chunk_elements: Upper bound on ``batch * M * N`` float64 elements held at once
            (the default, ``2**16``, keeps the working set inside the CPU cache).

    Attributes:
        num_shift_nodes: Number of shift cells with non-zero prior weight, i.e. likelihood
            evaluations per ``theta``.
    """

    def __init__(
        self,
        task: SignalModel,
        x_o: Tensor,
        num_offsets: int = DEFAULT_NUM_OFFSETS,
        num_threads: int | None = 1,
        chunk_elements: int = 2**16,
    ) -> None:
        if not is_signal_model(task):
            raise TypeError(
                "`task` must be a SignalInNoiseTask with a single shift nuisance; "
                f"got {type(task).__name__}."
            )
        check_int(num_offsets, "num_offsets", 1)
        check_int(chunk_elements, "chunk_elements", 1)
        x = task.check_observation(x_o).detach().to("cpu", torch.float64)[0]
        self.task = task
        self.num_offsets = num_offsets
        self.num_threads = num_threads
        self.chunk_elements = chunk_elements
        if num_threads is not None:
            check_int(num_threads, "num_threads", 1, " or None")

        length, dt, t0 = task.num_samples, task.dt, task.t_start
        lo, hi = float(task.nuisance_low[0]), float(task.nuisance_high[0])
        first = math.floor((lo - t0) / dt + 1e-9)  # aligned cell edge a = t0 + first * dt <= lo
        start = t0 + first * dt
        num_cells = math.ceil((hi - start) / dt - 1e-9)
        self.num_cells = num_cells
        self.fft_size = _fast_fft_size(length + num_cells - 1)

        # Prior weight of every (offset j, integer shift k) cell: covered length / (hi - lo).
        k = torch.arange(num_cells, dtype=torch.float64)
        j = torch.arange(num_offsets, dtype=torch.float64)
        left = start + (k[None, :] + j[:, None] / num_offsets) * dt
        right = left + dt / num_offsets
        covered = (right.clamp(max=hi) - left.clamp(min=lo)).clamp(min=0.0)
        self.log_weights = torch.log(covered / (hi - lo))  # (M, K); -inf outside the support
        self.num_shift_nodes = int((covered > 0).sum())

        # Extended grid u[j, p] = (t0 - a) + (p - (K - 1) - c_j) dt, p = 0 .. L + K - 2.
        p = torch.arange(length + num_cells - 1, dtype=torch.float64)
        offsets = (j + 0.5) / num_offsets
        self.u = (t0 - start) + (p[None, :] - (num_cells - 1) - offsets[:, None]) * dt

        self.x_fft_conj = torch.fft.rfft(x, n=self.fft_size).conj()
        self.x_norm2 = float((x**2).sum())
        self.log_norm = -0.5 * length * math.log(2 * math.pi * task.noise_std**2)

    @property
    def chunk_size(self) -> int:
        """Number of ``theta`` values processed together."""
        return max(1, self.chunk_elements // (self.num_offsets * self.fft_size))

    def _log_likelihood_reversed(self, theta: Tensor) -> Tensor:
        """``log p(x_o | theta, s)`` with the integer shift axis reversed (``n = K - 1 - k``)."""
        task = self.task
        length, num_cells = task.num_samples, self.num_cells
        wave = task.waveform(theta[:, None, :], self.u)  # (B, M, L + K - 1)
        corr = torch.fft.irfft(
            torch.fft.rfft(wave, n=self.fft_size) * self.x_fft_conj, n=self.fft_size
        )[..., :num_cells]  # corr[n] = <x, h_s> at k = K - 1 - n
        # energy[n] = sum_{p=n}^{n+L-1} wave[p]^2, by a running difference of the window sums.
        wave2 = wave**2
        step = wave2[..., length : length + num_cells - 1] - wave2[..., : num_cells - 1]
        energy = wave2[..., :length].sum(-1, keepdim=True) + torch.nn.functional.pad(
            torch.cumsum(step, dim=-1), (1, 0)
        )
        chi2 = self.x_norm2 - 2.0 * corr + energy
        return self.log_norm - 0.5 * chi2 / task.noise_std**2

    def log_likelihood_grid(self, theta: Tensor) -> Tensor:
        """``log p(x_o | theta, s_kj)`` at every shift cell midpoint (no prior weight).

        Args:
            theta: Tensor of shape ``(B, theta_dim)`` (computed in float64).

        Returns:
            Float64 tensor of shape ``(B, M, K)``; entry ``[b, j, k]`` is at shift
            ``a + (k + c_j) dt``.
        """
        theta = theta.detach().to("cpu", torch.float64)
        with torch_threads(self.num_threads):
            return self._log_likelihood_reversed(theta).flip(-1)

    def __call__(self, theta: Tensor) -> Tensor:
        """Shift-marginal log-likelihood ``log p(x_o | theta)``.

        Args:
            theta: Tensor of shape ``(n, theta_dim)`` (computed in float64).

        Returns:
            Float64 tensor of shape ``(n,)``.
        """
        theta = theta.detach().to("cpu", torch.float64)
        out = torch.empty(theta.shape[0], dtype=torch.float64)
        log_weights = self.log_weights.flip(-1)
        step = self.chunk_size
        with torch_threads(self.num_threads):
            for begin in range(0, theta.shape[0], step):
                grid = self._log_likelihood_reversed(theta[begin : begin + step]) + log_weights
                out[begin : begin + step] = torch.logsumexp(grid.flatten(1), dim=-1)
        return out
