"""Per-row code that the cpu and the cuda backend both compile (``njit`` there,
``cuda.jit(device=True)`` here), so that the two run the same arithmetic.  Plain Python
with ``math`` only: this module imports nothing heavy."""

import math


def softmax_crossentropy_row(P, row_loss, S, y, i):
    """Row i: P[i] = softmax(S[i]); row_loss[i] = logsumexp(S[i]) − S[i, y[i]], computed
    as (max − s_y) + log1p(Σ of the other exps), so tiny losses keep their digits."""
    C = S.shape[1]
    top = 0
    for j in range(1, C):
        if S[i, j] > S[i, top]:
            top = j
    m = S[i, top]
    rest = 0.0  # Σ over the non-maximal entries: logsumexp = m + log1p(rest)
    for j in range(C):
        if j != top:
            e = math.exp(S[i, j] - m)
            P[i, j] = e
            rest += e
    P[i, top] = 1.0
    for j in range(C):
        P[i, j] /= 1.0 + rest
    row_loss[i] = (m - S[i, y[i]]) + math.log1p(rest)
