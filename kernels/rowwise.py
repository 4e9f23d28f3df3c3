"""Per-row code of the cpu backend's loss (compiled with ``njit`` there).  Plain Python with
``math`` (and numbamlp.kernels' negligible_exp) only: this module imports nothing heavy.
The cuda backend's loss kernel computes the same formula on rows of its flat (M, ·)
buffers, which these 2-D signatures cannot take."""

import math

from numbamlp.kernels import negligible_exp


def softmax_crossentropy_row(P, row_loss, S, y, i):
    """Row i: P[i] = softmax(S[i]); row_loss[i] = logsumexp(S[i]) − S[i, y[i]], computed
    as (max − s_y) + log1p(Σ of the other exps), so tiny losses keep their digits.  An
    exponential below negligible_exp is 0 in P (not in the loss's sum)."""
    C = S.shape[1]
    negligible = negligible_exp(P.dtype)
    top = 0
    for j in range(1, C):
        if S[i, j] > S[i, top]:
            top = j
    m = S[i, top]
    rest = 0.0  # Σ over the non-maximal entries: logsumexp = m + log1p(rest)
    for j in range(C):
        if j != top:
            e = math.exp(S[i, j] - m)
            P[i, j] = e if e >= negligible else 0.0
            rest += e
    P[i, top] = 1.0
    for j in range(C):
        P[i, j] /= 1.0 + rest
    row_loss[i] = (m - S[i, y[i]]) + math.log1p(rest)
