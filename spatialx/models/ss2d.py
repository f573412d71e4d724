"""The 2D selective scan (SS2D, from VMamba), the VSS block, and LE-Mamba's state sharing.

Layout: :class:`SS2D` and :class:`VSSBlock` take and return **channels-last** images ``(batch, H, W, C)``, like
VMamba (the LayerNorms and linear layers act on the last axis); :func:`cross_scan` and :func:`cross_merge` work on
channels-first ``(batch, C, H, W)``, the layout of the depthwise convolution inside SS2D.

SS2D, for an input ``x`` (batch, H, W, d_model), ``D = d_inner = ssm_ratio * d_model``, ``K = 4`` directions::

    x, z = in_proj(x).chunk(2)                         # (batch, H, W, D) each
    x    = SiLU(depthwise_conv(x))                     # d_conv x d_conv, channels-first inside
    xs   = cross_scan(x)                               # (batch, K, D, H*W)
    dt, B, C = per-direction x_proj(xs)                # ranks dt_rank, N, N
    dt   = per-direction dt_proj(dt)                   # (batch, K, D, L); bias and softplus inside the scan
    ys   = selective_scan(xs, dt, -exp(A_log), B, C, D_skip)   # B, C grouped by direction
    y    = LayerNorm(cross_merge(ys)) * SiLU(z)
    out  = dropout(out_proj(y))

Initialisation (Mamba's): ``A_log = log(1..N)``, ``D_skip = 1``, dt_proj weights uniform in +-dt_rank^-0.5 and its
bias the inverse softplus of dt drawn log-uniformly in [dt_min, dt_max] = [1e-3, 0.1] (floored at 1e-4).

State sharing (LE-Mamba, ``share_state=True``): the scan's last state of every direction, ``(batch, K, D, N)``
(``return_state=True``), can be handed to another SS2D as ``prev_state``. There it is projected per direction
(a grouped 1x1 conv1d over channels, ``D_prev -> D``), ``g`` is a grouped 1x1 conv1d of ``xs`` (``D -> N`` per
direction), and ``xs <- xs + alpha * einsum('bkdn,bknl->bkdl', h, g)`` with ``alpha`` (1, K, D, 1) initialised to
0, so a fresh model starts as plain SS2D. As in the authors' code, ``dt``, ``B`` and ``C`` are computed from ``xs``
*before* this update and only the scan input gets it (``share_state_mode="code"``); ``"paper"`` computes them from
the updated ``xs`` (the paper's Algorithm 2).

Other hooks: ``state_injection(xs, prev_state) -> xs`` (constructor or forward argument) transforms ``xs`` before
``dt``/``B``/``C`` are computed; ``initial_state`` (batch, K, D, N) starts each direction's scan from a given state
(this forces the pure-PyTorch scan: ``mamba_ssm``'s kernel has no initial state).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spatialx.models.scan import selective_scan

__all__ = ["SS2D", "DropPath", "VSSBlock", "cross_merge", "cross_scan", "hooked"]

K_DIRECTIONS = 4
#: Pixels per chunk of the per-pixel work after the scans in inference (SS2D's gate and output projection,
#: VSSBlock's MLP): each chunk's temporaries (at most 2 MiB for a 128-wide layer) stay below the mmap threshold of
#: :mod:`spatialx.runtime`, so they are reused from the heap instead of being faulted in and zeroed afresh as
#: whole-image tensors are (each 16 MiB tensor ~1.7 ms of kernel time), and stay in cache between the operations.
PIXEL_CHUNK = 1 << 12
StateInjection = Callable[[Tensor, Tensor | None], Tensor]


def cross_scan(x: Tensor) -> Tensor:
    """(batch, C, H, W) -> (batch, 4, C, H*W): the image read row-major, column-major, and each of them reversed."""
    if x.dim() != 4:
        raise ValueError(f"cross_scan expects (batch, C, H, W), got shape {tuple(x.shape)}")
    forward = torch.stack([x.flatten(2), x.transpose(2, 3).flatten(2)], dim=1)
    return torch.cat([forward, forward.flip(-1)], dim=1)


def cross_merge(ys: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Inverse of :func:`cross_scan`: map the four directions back to image order and sum -> (batch, C, H, W).

    ``ys`` is (batch, 4, C, H*W) with ``size=(H, W)``, or (batch, 4, C, H, W) where each direction's sequence is
    simply laid out over the trailing H x W (VMamba's convention). ``cross_merge(cross_scan(x)) == 4 * x``.
    """
    if ys.dim() == 5:
        if size is not None and tuple(size) != tuple(ys.shape[-2:]):
            raise ValueError(f"size {size} does not match ys of shape {tuple(ys.shape)}")
        size = (ys.shape[-2], ys.shape[-1])
        ys = ys.flatten(3)
    if ys.dim() != 4 or ys.shape[1] != K_DIRECTIONS:
        raise ValueError(f"cross_merge expects (batch, 4, C, L) or (batch, 4, C, H, W), got {tuple(ys.shape)}")
    if size is None:
        raise ValueError("cross_merge needs size=(H, W) for (batch, 4, C, L) input")
    height, width = size
    batch, _, channels, length = ys.shape
    if height * width != length:
        raise ValueError(f"size {size} does not match sequence length {length}")
    folded = ys[:, :2] + ys[:, 2:].flip(-1)
    rows = folded[:, 0].reshape(batch, channels, height, width)
    cols = folded[:, 1].reshape(batch, channels, width, height).transpose(2, 3)
    return rows + cols


def hooked(*modules: nn.Module) -> bool:
    """Whether a forward hook (the FLOP counter's, a user's) watches one of ``modules``: the fast inference paths
    that use a module by its weights, not by calling it, step aside then."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def at_least_fp32(p: Tensor) -> Tensor:
    """The SSM parameters in float32 under reduced-precision weights (as Mamba), in float64 for float64 models."""
    return p.to(torch.promote_types(p.dtype, torch.float32))


def _inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


class SS2D(nn.Module):
    """VMamba's 2D selective-scan layer on channels-last images, with optional LE-Mamba state sharing.

    Args:
        d_model: channels in and out.
        d_state: N, the state size per channel.
        ssm_ratio: expansion, ``d_inner = int(ssm_ratio * d_model)``.
        dt_rank: rank of the dt projection; ``"auto"`` is ``ceil(d_model / 16)``.
        d_conv: odd kernel size of the depthwise convolution (1 for a per-channel scale).
        dropout: dropout after ``out_proj``.
        bias, conv_bias: biases of the in/out projections and of the convolution.
        dt_min, dt_max, dt_init_floor, dt_scale: the dt initialisation (see the module docstring).
        share_state: add LE-Mamba's state-sharing update (``prev_state`` in :meth:`forward`).
        state_dim: channels of the incoming state (the producer's ``d_inner``); default this layer's ``d_inner``.
        share_state_mode: ``"code"`` (dt, B, C from ``xs`` before the update) or ``"paper"`` (after it).
        state_injection: default hook ``(xs, prev_state) -> xs`` applied before dt, B, C are computed.
        out_norm_eps: eps of the LayerNorm on the merged scan output.
        scan_backend, chunk: passed to :func:`spatialx.models.scan.selective_scan`.
    """

    def __init__(self, d_model: int, d_state: int = 16, ssm_ratio: float = 2.0, dt_rank: int | str = "auto",
                 d_conv: int = 3, dropout: float = 0.0, *, bias: bool = False, conv_bias: bool = True,
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4, dt_scale: float = 1.0,
                 share_state: bool = False, state_dim: int | None = None, share_state_mode: str = "code",
                 state_injection: StateInjection | None = None, out_norm_eps: float = 1e-5,
                 scan_backend: str = "auto", chunk: int | None = None) -> None:
        super().__init__()
        if d_conv < 1 or d_conv % 2 == 0:
            raise ValueError(f"d_conv must be a positive odd number, got {d_conv}")
        if share_state_mode not in ("code", "paper"):
            raise ValueError(f"share_state_mode must be 'code' or 'paper', got {share_state_mode!r}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = int(ssm_ratio * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.d_conv = d_conv
        self.share_state = share_state
        self.share_state_mode = share_state_mode
        self.state_injection = state_injection
        self.scan_backend = scan_backend
        self.chunk = chunk
        k, d, n, r = K_DIRECTIONS, self.d_inner, d_state, self.dt_rank

        self.in_proj = nn.Linear(d_model, 2 * d, bias=bias)
        self.conv2d = nn.Conv2d(d, d, d_conv, padding=(d_conv - 1) // 2, groups=d, bias=conv_bias)
        self.act = nn.SiLU()
        self.x_proj_weight = nn.Parameter(torch.empty(k, r + 2 * n, d))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d, r))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d))
        self.A_logs = nn.Parameter(torch.empty(k * d, n))
        self.Ds = nn.Parameter(torch.empty(k * d))
        self.A_logs._no_weight_decay = True  # type: ignore[attr-defined]
        self.Ds._no_weight_decay = True  # type: ignore[attr-defined]
        self.out_norm = nn.LayerNorm(d, eps=out_norm_eps)
        self.out_proj = nn.Linear(d, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if share_state:
            self.state_dim = d if state_dim is None else int(state_dim)
            self.state_proj = nn.Conv1d(k * self.state_dim, k * d, 1, groups=k)
            self.state_g = nn.Conv1d(k * d, k * n, 1, groups=k)
            self.state_alpha = nn.Parameter(torch.zeros(1, k, d, 1))
        else:
            self.state_dim = None
        self._dt_init = (dt_min, dt_max, dt_init_floor, dt_scale)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """(Re-)initialise x_proj, dt_proj, A_log and D as Mamba does (see the module docstring)."""
        dt_min, dt_max, floor, scale = self._dt_init
        nn.init.uniform_(self.x_proj_weight, -self.d_inner ** -0.5, self.d_inner ** -0.5)
        std = self.dt_rank ** -0.5 * scale
        nn.init.uniform_(self.dt_projs_weight, -std, std)
        dt = torch.exp(torch.rand(K_DIRECTIONS, self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=floor)
        self.dt_projs_bias.copy_(_inverse_softplus(dt))
        self.A_logs.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(
            K_DIRECTIONS * self.d_inner, 1))
        self.Ds.fill_(1.0)
        if self.share_state:
            self.state_alpha.zero_()

    def _share(self, xs: Tensor, prev_state: Tensor) -> Tensor:
        batch, k, d, length = xs.shape
        expected = (batch, k, self.state_dim, self.d_state)
        if tuple(prev_state.shape) != expected:
            raise ValueError(f"prev_state must be (batch, 4, state_dim, N) = {expected}, got {tuple(prev_state.shape)}")
        h = self.state_proj(prev_state.reshape(batch, k * self.state_dim, self.d_state).to(xs.dtype))
        g = self.state_g(xs.reshape(batch, k * d, length)).view(batch, k, self.d_state, length)
        return xs + self.state_alpha * torch.einsum("bkdn,bknl->bkdl", h.view(batch, k, d, self.d_state), g)

    def forward(self, x: Tensor, prev_state: Tensor | None = None, initial_state: Tensor | None = None,
                return_state: bool = False,
                state_injection: StateInjection | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """``x`` (batch, H, W, d_model) -> (batch, H, W, d_model), plus the last states (batch, 4, d_inner, N)
        of the four scans with ``return_state=True``.

        ``prev_state``: another SS2D's returned state, used by the state-sharing update (``share_state=True``)
        and passed to ``state_injection``; ``initial_state`` (batch, 4, d_inner, N): the scans' starting states.
        """
        if x.dim() != 4 or x.shape[-1] != self.d_model:
            raise ValueError(f"SS2D expects channels-last (batch, H, W, {self.d_model}), got {tuple(x.shape)}")
        batch, height, width, _ = x.shape
        k, d, n, r = K_DIRECTIONS, self.d_inner, self.d_state, self.dt_rank
        length = height * width
        hook = state_injection if state_injection is not None else self.state_injection
        if hook is None and self._cross_usable(x):
            # channels last throughout (in_proj's halves, the depthwise convolution, the kernel): no transposes
            w_x, w_z = self.in_proj.weight.chunk(2, dim=0)
            b_x, b_z = (None, None) if self.in_proj.bias is None else self.in_proj.bias.chunk(2)
            xi = F.silu(self.conv2d(F.linear(x, w_x, b_x).permute(0, 3, 1, 2)), inplace=True).permute(0, 2, 3, 1)
            y, last = self._cross_scans(xi.reshape(batch, length, d), (height, width), prev_state, initial_state,
                                        return_state)
            return self._finish_by_chunks(y, x, w_z, b_z, last, return_state)
        xi, z = self.in_proj(x).chunk(2, dim=-1)
        xi = self.act(self.conv2d(xi.permute(0, 3, 1, 2).contiguous()))
        xs = cross_scan(xi)  # (batch, K, D, L)
        if hook is not None:
            xs = hook(xs, prev_state)
        for_params = xs
        if self.share_state and prev_state is not None:
            xs = self._share(xs, prev_state)
            if self.share_state_mode == "paper":
                for_params = xs
        x_dbl = torch.einsum("bkdl,kcd->bkcl", for_params, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl, [r, n, n], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        if initial_state is not None:
            if tuple(initial_state.shape) != (batch, k, d, n):
                raise ValueError(f"initial_state must be (batch, 4, d_inner, N) = {(batch, k, d, n)}, "
                                 f"got {tuple(initial_state.shape)}")
            initial_state = initial_state.reshape(batch, k * d, n)
        result = selective_scan(
            xs.reshape(batch, k * d, length), dts.reshape(batch, k * d, length), -torch.exp(at_least_fp32(self.A_logs)),
            Bs.contiguous(), Cs.contiguous(), at_least_fp32(self.Ds),
            delta_bias=at_least_fp32(self.dt_projs_bias.reshape(-1)),
            delta_softplus=True, return_last_state=return_state, initial_state=initial_state, chunk=self.chunk,
            backend=self.scan_backend)
        ys, last = result if return_state else (result, None)
        y = cross_merge(ys.view(batch, k, d, length), (height, width))  # (batch, D, H, W)
        return self._finish(y.permute(0, 2, 3, 1), z, last, return_state)

    def _finish(self, y: Tensor, z: Tensor, last: Tensor | None,
                return_state: bool) -> Tensor | tuple[Tensor, Tensor]:
        """Merged scan output ``y`` (batch, H, W, D) -> norm, gate, out_proj; the states as (batch, 4, D, N)."""
        y = self.out_norm(y) * F.silu(z)
        return self._with_state(self.dropout(self.out_proj(y)), last, return_state)

    def _finish_by_chunks(self, y: Tensor, x: Tensor, w_z: Tensor, b_z: Tensor | None, last: Tensor | None,
                          return_state: bool) -> Tensor | tuple[Tensor, Tensor]:
        """:meth:`_finish` in inference, :data:`PIXEL_CHUNK` pixels at a time: ``y`` (batch, L, D) the merged
        scans, ``x`` (batch, H, W, d_model) the layer's input, whose gate ``z = in_proj_z(x)`` is made chunk by
        chunk too (the same numbers as :meth:`_finish`; see :data:`PIXEL_CHUNK` for why)."""
        flat_y, flat_x = y.view(-1, y.shape[-1]), x.reshape(-1, x.shape[-1])
        out = x.new_empty(flat_x.shape[0], self.d_model)
        w_out, b_out = self.out_proj.weight, self.out_proj.bias
        direct = not (self.training and isinstance(self.dropout, nn.Dropout))
        for start in range(0, flat_x.shape[0], PIXEL_CHUNK):
            part = slice(start, start + PIXEL_CHUNK)
            gate = F.silu(F.linear(flat_x[part], w_z, b_z), inplace=True)
            gated = self.out_norm(flat_y[part]).mul_(gate)
            if direct:  # the projection written into its rows of ``out``, not copied there
                if b_out is None:
                    torch.mm(gated, w_out.t(), out=out[part])
                else:
                    torch.addmm(b_out, gated, w_out.t(), out=out[part])
            else:
                out[part] = self.dropout(self.out_proj(gated))
        return self._with_state(out.view(*x.shape[:-1], self.d_model), last, return_state)

    def _with_state(self, out: Tensor, last: Tensor | None, return_state: bool) -> Tensor | tuple[Tensor, Tensor]:
        if return_state:
            return out, last.view(out.shape[0], K_DIRECTIONS, self.d_inner, self.d_state)
        return out

    def _cross_usable(self, x: Tensor) -> bool:
        """Whether the four scans can run as one compiled inference pass on image-order inputs (CPU, numba, the
        compiled backend chosen or defaulted, grad mode off): same results as the per-direction path, without its
        four copies of the image (``cross_scan``) and the merge. That pass uses ``in_proj``, ``out_proj`` and
        ``state_g`` by their weights, so hooks on them send the layer down the per-direction path."""
        if x.device.type != "cpu" or not (self.scan_backend == "compiled"
                                           or (self.scan_backend == "auto" and self.chunk is None)):
            return False
        if hooked(self.in_proj, self.out_proj, *([self.state_g] if self.share_state else [])):
            return False
        from spatialx.models import scan_cpu

        return not torch.is_grad_enabled() and scan_cpu.available()

    def _cross_scans(self, x: Tensor, size: tuple[int, int], prev_state: Tensor | None,
                     initial_state: Tensor | None, return_state: bool) -> tuple[Tensor, Tensor | None]:
        """The four directional scans of ``x`` (batch, L, D), channels last in image order, merged (batch, L, D),
        and their last states (batch, 4 D, N) with ``return_state``. The projections are per pixel, so they commute
        with the directions' reordering: each direction's is one matmul in image order, made just before its scan,
        and the kernel reads the direction's order itself and computes the step (dt projection, bias, softplus).
        Memory is that of one direction's projection and input, not of the four (nor of a (batch, 4 D, L) step
        tensor)."""
        from spatialx.models import scan_cpu

        batch, length, d = x.shape
        k, n = K_DIRECTIONS, self.d_state
        maps = offsets = None
        if self.share_state and prev_state is not None:
            expected = (batch, k, self.state_dim, n)
            if tuple(prev_state.shape) != expected:
                raise ValueError(f"prev_state must be (batch, 4, state_dim, N) = {expected}, "
                                 f"got {tuple(prev_state.shape)}")
            h = self.state_proj(prev_state.reshape(batch, k * self.state_dim, n).to(x.dtype)).view(batch, k, d, n)
            scaled = (self.state_alpha.view(1, k, d, 1) * h).transpose(2, 3)  # (batch, 4, N, D)
            # u_k = x + g_k h_k^T with g_k = x Wg_k^T + bg_k (the S2L update) is one D x D map per direction
            maps = torch.eye(d, dtype=x.dtype) + torch.matmul(self.state_g.weight.view(k, n, d).transpose(1, 2), scaled)
            offsets = torch.matmul(self.state_g.bias.view(1, k, 1, n), scaled)
        if initial_state is not None:
            if tuple(initial_state.shape) != (batch, k, d, n):
                raise ValueError(f"initial_state must be (batch, 4, d_inner, N) = {(batch, k, d, n)}, "
                                 f"got {tuple(initial_state.shape)}")
            states = initial_state.detach().to(x.dtype).transpose(0, 1).contiguous()  # (4, batch, D, N)
        elif return_state:
            states = x.new_zeros(k, batch, d, n)
        else:  # the kernel starts from zero and keeps no last state (no 16 MiB of zeros for 1024 local windows)
            states = x.new_empty(k, 0, d, n)
        y = x.new_empty(batch, length, d)  # the first direction writes it, the others add to it
        A = -torch.exp(at_least_fp32(self.A_logs)).view(k, d, n)
        # one buffer each for the directions' projections and S2L inputs (fresh pages per direction cost ~1/3 of
        # the matmul that fills them)
        proj = x.new_empty(batch, length, self.x_proj_weight.shape[1])
        u = x if maps is None else x.new_empty(batch, length, d)
        for direction in range(k):
            if maps is not None:
                for i in range(batch):
                    torch.addmm(offsets[i, direction], x[i], maps[i, direction], out=u[i])
            source = u if self.share_state_mode == "paper" else x
            torch.matmul(source, self.x_proj_weight[direction].t(), out=proj)  # (batch, L, R + 2N)
            scan_cpu.ss2d_direction_scan(direction, proj, self.dt_projs_weight[direction],
                                         self.dt_projs_bias[direction], u, A[direction],
                                         self.Ds.view(k, d)[direction], states[direction], y, size,
                                         accumulate=direction > 0)
        return y, (states.transpose(0, 1).reshape(batch, k * d, n) if return_state else None)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero whole samples with probability ``p`` and rescale the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop-path probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class VSSBlock(nn.Module):
    """VMamba's visual state-space block on channels-last images (batch, H, W, C)::

        x = x + drop_path(SS2D(LayerNorm(x)))
        x = x + drop_path(MLP(LayerNorm(x)))        # Linear C -> mlp_ratio*C, GELU, Linear back; skipped if ratio 0

    LayerNorm eps is ``norm_eps`` (1e-6). ``ss2d_kwargs`` go to :class:`SS2D` (``share_state``, ``state_dim``,
    ``scan_backend``, ...). With ``return_state=True`` the forward also returns the SS2D's last states.
    """

    def __init__(self, hidden_dim: int, drop_path: float = 0.0, d_state: int = 16, ssm_ratio: float = 2.0,
                 dt_rank: int | str = "auto", d_conv: int = 3, mlp_ratio: float = 4.0, norm_eps: float = 1e-6,
                 ssm_drop: float = 0.0, mlp_drop: float = 0.0, **ss2d_kwargs: object) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim, eps=norm_eps)
        self.op = SS2D(hidden_dim, d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, d_conv=d_conv,
                       dropout=ssm_drop, **ss2d_kwargs)  # type: ignore[arg-type]
        self.drop_path = DropPath(drop_path)
        if mlp_ratio > 0:
            hidden = int(hidden_dim * mlp_ratio)
            self.norm2 = nn.LayerNorm(hidden_dim, eps=norm_eps)
            self.mlp: nn.Module | None = nn.Sequential(
                nn.Linear(hidden_dim, hidden), nn.GELU(), nn.Dropout(mlp_drop), nn.Linear(hidden, hidden_dim),
                nn.Dropout(mlp_drop))
        else:
            self.norm2 = None
            self.mlp = None

    def forward(self, x: Tensor, prev_state: Tensor | None = None, initial_state: Tensor | None = None,
                return_state: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        result = self.op(self.norm(x), prev_state=prev_state, initial_state=initial_state,
                         return_state=return_state)
        y, state = result if return_state else (result, None)
        if torch.is_grad_enabled() or self.training:
            x = x + self.drop_path(y)
            if self.mlp is not None:
                x = x + self.drop_path(self.mlp(self.norm2(x)))
        else:  # inference: the residual added into SS2D's fresh output, the MLP a chunk of pixels at a time
            x = y.add_(x) if y.is_contiguous() else (x + y).contiguous()
            if self.mlp is not None:
                flat = x.view(-1, x.shape[-1])
                for start in range(0, flat.shape[0], PIXEL_CHUNK):
                    part = flat[start:start + PIXEL_CHUNK]
                    part += self.mlp(self.norm2(part))
        return (x, state) if return_state else x
