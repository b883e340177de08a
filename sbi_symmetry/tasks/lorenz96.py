r"""The two-scale Lorenz-96 system, the main benchmark of Embed and Emulate, as a nuisance task.

``K`` slow variables ``X_k`` sit on a ring; each carries ``J`` fast variables ``Y_{j,k}``, and
the ``J * K`` fast variables form one longer ring (``Y_{J+1,k} = Y_{1,k+1}``):

    dX_k/dt     = X_{k-1} (X_{k+1} - X_{k-2}) - X_k + F - (h c / b) sum_j Y_{j,k}
    dY_{j,k}/dt = c b Y_{j+1,k} (Y_{j-1,k} - Y_{j+2,k}) - c Y_{j,k} + (h c / b) X_k

with forcing ``F``, coupling ``h``, time-scale ratio ``c`` and amplitude ratio ``b`` (Lorenz
1996). All four are inferred: ``theta = (F, h, c, b)`` with the uniform prior
``F ~ U(8, 12)``, ``h ~ U(0.5, 1.5)``, ``c ~ U(5, 15)``, ``b ~ U(5, 15)`` around the usual
``(10, 1, 10, 10)``.

One simulation: random initial conditions near the attractor's climatology
(``X_k = F (0.25 + 0.4 N(0, 1))``, ``Y_{j,k} = N(0, 1) / b``), a burn-in onto the attractor,
then ``T`` snapshots of the slow variables ``X`` every ``snapshot_interval`` time units,
starting a random ``time_offset`` after the burn-in, rolled by a random ``site_shift`` along the
ring, plus optional white observation noise. Fixed-step RK4 in torch, vectorised over the
batch. The observation has shape ``(T, K)``: the time snapshots are the channels and the sites
are the length axis, so a ``ConvEncoder1D(input_length=K, in_channels=T,
padding_mode="circular")`` is exactly equivariant under the cyclic site shift
(and invariant after mean pooling), while the short time history at each site enters through
the first convolution's channel mixing. The sites are the natural convolution axis because the
dynamics couple only neighbouring sites (``k-2 ... k+1``).

Two symmetries make up the nuisance ``(time_offset, site_shift)``, drawn from a ``BoxUniform``
(so ``nuisance_prior.sample((n,))`` works as everywhere) and made integer inside ``simulate``:
the offset is rounded to the nearest integration step, the shift rounded down to a site:

* time: the system is autonomous and, on its attractor, stationary, so where the window starts
  does not change the distribution of the data;
* space: the equations are equivariant under the cyclic shift of the sites, and the random
  initial conditions are exchangeable, so ``site_shift`` acts on the data as an exact
  ``torch.roll`` of the sites (tested).

The intrinsic randomness (initial conditions, observation noise) is not part of the nuisance; it
comes from the ``generator``. No exact likelihood exists, so there is no ``reference_posterior``
(it is defined on :class:`~sbi_symmetry.tasks.base.SignalInNoiseTask` only); judge posteriors by
SBC, TARP and contraction.

Sizing against the paper (``K = 36``, ``J = 10``): the ring sizes are the paper's; what the
budget of one minute per 10^4 simulations on 2 CPU cores limits is the time span. The step is
``dt = 0.005``: with ``dt = 0.01`` RK4 diverged in corners of the prior (large ``c``, small
``b``: fast, stiff small scales), at 0.005 it is finite over the whole prior (tested). One RK4
step of 10^4 systems takes about 33 ms on one core (integrated in chunks of 1000 that stay in
cache), so the budget buys about 1500 steps. The default uses 900 (4.5 time units): 2 of
burn-in (with these initial conditions the ensemble energy has settled by then at every corner
of the prior; from ``X ~ N(0, 1)`` it overshoots for about 3), an offset of up to 1, and a
window of ``T = 16`` snapshots every 0.1 (1.5 time units; the slow variables decorrelate in
about 0.5). Measured: 10^4 simulations in 29 s with one torch thread at a load average of
about 2 on the shared 2-core machine. (With two threads on that loaded machine the same call
took 176 s: torch's intra-op threads spin-wait on busy cores, so prefer
``torch.set_num_threads(1)`` there.) The window is much shorter than the paper's
trajectories, so posteriors are wider; raise ``num_snapshots`` or ``snapshot_interval`` for
longer windows at proportionally higher cost.

Example:
    >>> import torch
    >>> task = Lorenz96(num_snapshots=4, burn_in=0.1, max_offset=0.05)
    >>> g = torch.Generator().manual_seed(0)
    >>> x = task.simulate(task.sample_prior(2, generator=g), generator=g)
    >>> x.shape
    torch.Size([2, 4, 36])
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from sbi_symmetry._validation import check_int, check_number, check_positive
from sbi_symmetry.tasks.base import NuisanceTask


def lorenz96_tendency(x: Tensor, y: Tensor, theta: Tensor) -> tuple[Tensor, Tensor]:
    """Time derivatives of the two-scale Lorenz-96 system.

    Args:
        x: Slow variables, shape ``(n, K)``.
        y: Fast variables, shape ``(n, K * J)``; ``y[:, k * J + j]`` is ``Y_{j,k}``.
        theta: Parameters ``(F, h, c, b)``, shape ``(n, 4)``.

    Returns:
        ``(dx/dt, dy/dt)`` with the shapes of ``x`` and ``y``.

    Example:
        >>> import torch
        >>> x, y = torch.full((1, 4), 2.0), torch.zeros(1, 8)
        >>> dx, dy = lorenz96_tendency(x, y, torch.tensor([[2.0, 1.0, 10.0, 10.0]]))
        >>> dx  # X = F is a fixed point of the slow ring when Y = 0
        tensor([[0., 0., 0., 0.]])
    """
    num_slow = x.shape[-1]
    forcing, coupling, time_scale, amplitude = theta.unbind(-1)
    hcb = (coupling * time_scale / amplitude).unsqueeze(-1)
    cb = (time_scale * amplitude).unsqueeze(-1)
    c = time_scale.unsqueeze(-1)
    # Circular neighbours by padding: xp[:, k + 2] = X_k, so X_{k+m} = xp[:, 2 + m : ...].
    xp = torch.cat([x[:, -2:], x, x[:, :1]], dim=-1)
    dx = xp[:, 1:-2] * (xp[:, 3:] - xp[:, :-3]) - x + forcing.unsqueeze(-1)
    dx = dx - hcb * y.view(y.shape[0], num_slow, -1).sum(-1)
    # yp[:, j + 1] = Y_j on the long ring.
    yp = torch.cat([y[:, -1:], y, y[:, :2]], dim=-1)
    dy = cb * yp[:, 2:-1] * (yp[:, :-3] - yp[:, 3:]) - c * y
    dy = (dy.view(y.shape[0], num_slow, -1) + (hcb * x).unsqueeze(-1)).view_as(y)
    return dx, dy


def rk4_step(x: Tensor, y: Tensor, theta: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """One classical fourth-order Runge-Kutta step of :func:`lorenz96_tendency`.

    Args:
        x: Slow variables, shape ``(n, K)``.
        y: Fast variables, shape ``(n, K * J)``.
        theta: Parameters ``(F, h, c, b)``, shape ``(n, 4)``.
        dt: Time step.

    Returns:
        The state ``(x, y)`` after ``dt``.
    """
    kx1, ky1 = lorenz96_tendency(x, y, theta)
    kx2, ky2 = lorenz96_tendency(x + 0.5 * dt * kx1, y + 0.5 * dt * ky1, theta)
    kx3, ky3 = lorenz96_tendency(x + 0.5 * dt * kx2, y + 0.5 * dt * ky2, theta)
    kx4, ky4 = lorenz96_tendency(x + dt * kx3, y + dt * ky3, theta)
    x = x + (dt / 6.0) * (kx1 + 2.0 * (kx2 + kx3) + kx4)
    y = y + (dt / 6.0) * (ky1 + 2.0 * (ky2 + ky3) + ky4)
    return x, y


class Lorenz96(NuisanceTask):
    """Two-scale Lorenz-96 observed through its slow variables; infer ``(F, h, c, b)``.

    Args:
        device: Torch device for priors, integration and output.
        num_slow: Number of slow variables ``K`` (sites on the ring).
        num_fast: Number of fast variables ``J`` per slow one.
        dt: RK4 time step.
        burn_in: Time integrated from the random initial conditions before the offset.
        max_offset: Upper bound of the ``time_offset`` nuisance (time units).
        num_snapshots: Number of snapshots ``T`` of the slow variables.
        snapshot_interval: Time between snapshots; a multiple of ``dt``.
        noise_std: Standard deviation of white observation noise (0 for none).
        chunk_size: Systems integrated together (memory and cache); ``None`` picks 1000 on
            CPU and the whole batch on other devices. Results do not depend on it.
    """

    name: ClassVar[str] = "lorenz96"
    parameter_names: ClassVar[tuple[str, ...]] = ("F", "h", "c", "b")
    parameter_labels: ClassVar[tuple[str, ...]] = (r"$F$", r"$h$", r"$c$", r"$b$")
    nuisance_names: ClassVar[tuple[str, ...]] = ("time_offset", "site_shift")
    theta_low: ClassVar[tuple[float, ...]] = (8.0, 0.5, 5.0, 5.0)
    theta_high: ClassVar[tuple[float, ...]] = (12.0, 1.5, 15.0, 15.0)

    def __init__(
        self,
        device: str | torch.device = "cpu",
        *,
        num_slow: int = 36,
        num_fast: int = 10,
        dt: float = 0.005,
        burn_in: float = 2.0,
        max_offset: float = 1.0,
        num_snapshots: int = 16,
        snapshot_interval: float = 0.1,
        noise_std: float = 0.0,
        chunk_size: int | None = None,
    ) -> None:
        check_int(num_slow, "num_slow", 4)
        check_int(num_fast, "num_fast", 4)
        check_int(num_snapshots, "num_snapshots", 1)
        check_positive(dt, "dt")
        check_positive(snapshot_interval, "snapshot_interval")
        check_number(burn_in, "burn_in")
        check_number(max_offset, "max_offset")
        check_number(noise_std, "noise_std")
        stride = snapshot_interval / dt
        if abs(stride - round(stride)) > 1e-6 * stride:
            raise ValueError(
                f"`snapshot_interval` ({snapshot_interval}) must be a multiple of `dt` ({dt})."
            )
        if chunk_size is not None:
            check_int(chunk_size, "chunk_size", 1, " or None")
        self.num_slow = num_slow
        self.num_fast = num_fast
        self.dt = float(dt)
        self.burn_in = float(burn_in)
        self.max_offset = float(max_offset)
        self.num_snapshots = num_snapshots
        self.snapshot_interval = float(snapshot_interval)
        self.noise_std = float(noise_std)
        self.chunk_size = chunk_size
        self._stride = round(stride)
        self._burn_steps = round(self.burn_in / self.dt)
        self._max_offset_steps = round(self.max_offset / self.dt)
        # The nuisance box depends on the configuration, so it shadows the class attributes.
        self.nuisance_low = (0.0, 0.0)
        self.nuisance_high = (self.max_offset, float(num_slow))
        super().__init__(device=device)

    @property
    def x_shape(self) -> tuple[int, ...]:
        """``(T, K)``: snapshots as channels, sites as the length axis."""
        return (self.num_snapshots, self.num_slow)

    @property
    def num_steps(self) -> int:
        """RK4 steps per simulation (burn-in, largest offset and the window)."""
        return self._burn_steps + self._max_offset_steps + (self.num_snapshots - 1) * self._stride

    def _check_domain(self, theta: Tensor, name: str) -> None:
        bad = (theta[:, 1] < 0) | (theta[:, 2] <= 0) | (theta[:, 3] <= 0)
        if bool(bad.any()):
            raise ValueError(
                f"`{name}` must have h >= 0, c > 0 and b > 0; {int(bad.sum())} row(s) violate "
                f"this. The prior is F ~ U{self.theta_low[0], self.theta_high[0]}, "
                f"h ~ U{self.theta_low[1], self.theta_high[1]}, "
                f"c ~ U{self.theta_low[2], self.theta_high[2]}, "
                f"b ~ U{self.theta_low[3], self.theta_high[3]}."
            )

    def _nuisance_to_int(self, nuisance: Tensor) -> tuple[Tensor, Tensor]:
        """Offsets in integration steps and shifts in sites, both ``(n,)`` long tensors."""
        offset, shift = nuisance[:, 0], nuisance[:, 1]
        if bool(((offset < 0) | (offset > self.max_offset + 1e-6)).any()):
            raise ValueError(
                f"`nuisance[:, 0]` (time_offset) must lie in [0, {self.max_offset}]; got values "
                f"in [{float(offset.min()):.4g}, {float(offset.max()):.4g}]."
            )
        steps = torch.round(offset.double() / self.dt).long().clamp(0, self._max_offset_steps)
        sites = torch.floor(shift.double()).long().remainder(self.num_slow)
        return steps, sites

    def simulate(
        self,
        theta: Tensor,
        nuisance: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Integrate, cut the window at ``time_offset`` and roll the sites by ``site_shift``.

        Args:
            theta: Parameters ``(F, h, c, b)``, shape ``(n, 4)``.
            nuisance: ``(time_offset, site_shift)``, shape ``(n, 2)``; the offset is rounded to
                the nearest step, the shift down to an integer (mod ``K``). Drawn from the
                nuisance prior when ``None``.
            generator: Optional torch generator for the nuisance, the initial conditions and
                the observation noise.

        Returns:
            Float32 tensor of shape ``(n, T, K)``.
        """
        theta = self._check_theta(theta)
        num = theta.shape[0]
        if nuisance is None:
            nuisance = self.sample_nuisance(num, generator=generator)
        nuisance = self._check_nuisance(nuisance, num)
        offset_steps, site_shift = self._nuisance_to_int(nuisance)
        theta32 = theta.float()
        # Every random draw happens up front, so the result does not depend on the chunking.
        forcing = theta32[:, 0:1]
        x0 = forcing * (
            0.25 + 0.4 * torch.randn(num, self.num_slow, generator=generator, device=self.device)
        )
        y0 = (
            torch.randn(num, self.num_slow * self.num_fast, generator=generator, device=self.device)
            / theta32[:, 3:4]
        )
        noise = None
        if self.noise_std > 0:
            noise = torch.randn(num, *self.x_shape, generator=generator, device=self.device)
        chunk = self.chunk_size or (1000 if self.device.type == "cpu" else num)
        parts = [
            self._integrate(
                theta32[i : i + chunk],
                x0[i : i + chunk],
                y0[i : i + chunk],
                offset_steps[i : i + chunk],
            )
            for i in range(0, num, chunk)
        ]
        window = torch.cat(parts)
        bad = ~torch.isfinite(window).flatten(1).all(1)
        if bool(bad.any()):
            raise RuntimeError(
                f"Lorenz-96 integration diverged for {int(bad.sum())} parameter set(s), e.g. "
                f"theta = {theta[bad][0].tolist()}; reduce `dt` (now {self.dt})."
            )
        sites = torch.arange(self.num_slow, device=self.device)
        index = (sites.unsqueeze(0) - site_shift.unsqueeze(1)).remainder(self.num_slow)
        window = torch.gather(window, 2, index.unsqueeze(1).expand_as(window))
        if noise is not None:
            window = window + self.noise_std * noise
        return window

    def _integrate(self, theta: Tensor, x: Tensor, y: Tensor, offset_steps: Tensor) -> Tensor:
        """RK4 from ``(x, y)``; return the slow snapshots ``(n, T, K)`` of each window."""
        for _ in range(self._burn_steps):
            x, y = rk4_step(x, y, theta, self.dt)
        out = torch.zeros(x.shape[0], self.num_snapshots, self.num_slow, device=x.device)
        rows = torch.arange(x.shape[0], device=x.device)
        last = self._max_offset_steps + (self.num_snapshots - 1) * self._stride
        for step in range(last + 1):
            if step > 0:
                x, y = rk4_step(x, y, theta, self.dt)
            rel = step - offset_steps
            take = (rel >= 0) & (rel % self._stride == 0)
            take = take & (rel < self.num_snapshots * self._stride)
            # Written without a host sync, so the loop stays asynchronous on a GPU.
            slot = (rel // self._stride).clamp(0, self.num_snapshots - 1)
            out[rows, slot] = torch.where(take.unsqueeze(-1), x, out[rows, slot])
        return out

    def __repr__(self) -> str:
        return (
            f"Lorenz96(device={str(self.device)!r}, num_slow={self.num_slow}, "
            f"num_fast={self.num_fast}, dt={self.dt}, num_snapshots={self.num_snapshots})"
        )
