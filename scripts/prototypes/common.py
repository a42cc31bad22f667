import json, os, numpy as np
MUSIC = set(int(l) for l in open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'src', 'data', 'music_label_indices.txt')) if l.strip())

def load(path):
    F, L, ids = [], [], []
    for line in open(path):
        r = json.loads(line)
        e = np.array(r['embedding'][:10], dtype=np.float32)
        F.append(e / 255.0 * 4.0 - 2.0)
        L.append([l for l in r['labels'] if l in MUSIC and l != 137])
        ids.append(r['video_id'])
    return np.stack(F), L, ids

def fit_lda(X, L, dims=32, reg=0.3, weight='pair'):
    """X: (N,D) clip vectors; L: label lists. Returns (W (D,dims), mu)."""
    classes = sorted({l for ls in L for l in ls})
    ci = {c: i for i, c in enumerate(classes)}
    rows, cls, w = [], [], []
    for i, ls in enumerate(L):
        for l in ls:
            rows.append(i); cls.append(ci[l]); w.append(1.0 if weight == 'pair' else 1.0 / len(ls))
    rows = np.array(rows); cls = np.array(cls); w = np.array(w)
    S = X[rows].astype(np.float64)
    mu = (S * w[:, None]).sum(0) / w.sum()
    D = X.shape[1]
    Sw = np.zeros((D, D)); Sb = np.zeros((D, D))
    for c in range(len(classes)):
        m = cls == c
        xc = S[m]; wc = w[m]
        mc = (xc * wc[:, None]).sum(0) / wc.sum()
        d = xc - mc
        Sw += (d * wc[:, None]).T @ d
        Sb += wc.sum() * np.outer(mc - mu, mc - mu)
    Sw /= w.sum(); Sb /= w.sum()
    Sw += reg * np.trace(Sw) / D * np.eye(D)
    # generalized eig via whitening
    ev, V = np.linalg.eigh(Sw)
    Wh = V / np.sqrt(ev)
    M = Wh.T @ Sb @ Wh
    e2, U = np.linalg.eigh(M)
    order = np.argsort(e2)[::-1][:dims]
    W = Wh @ U[:, order]
    return W, mu

def normed(a):
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)

def precision(sims_topk_idx, Lq, Li, k=10):
    hit = 0; n = 0
    for q, idx in enumerate(sims_topk_idx):
        rq = set(Lq[q])
        if not rq: continue
        n += 1
        hit += sum(1 for j in idx[:k] if rq & set(Li[j]))
    return hit / (k * n), n

def topk(S, k):
    idx = np.argpartition(-S, k, axis=1)[:, :k]
    o = np.take_along_axis(S, idx, 1).argsort(1)[:, ::-1]
    return np.take_along_axis(idx, o, 1)

def chamfer(Fq, Fc):
    """Fq (10,d), Fc (n,10,d) normalised -> (n,)"""
    s = np.einsum('id,njd->nij', Fq, Fc)
    return 0.5 * (s.max(2).mean(1) + s.max(1).mean(1))

def sigmoid(z):
    return 1 / (1 + np.exp(-z))

def halves(F, L, flip=False):
    """bal_train's clips split by line as scripts/projection_bench.sh does: (fit, asked) indices and labels."""
    N = len(F)
    A, B = np.arange(0, N, 2), np.arange(1, N, 2)
    if flip:
        A, B = B, A
    return A, B, [L[i] for i in A], [L[i] for i in B]

def evaluate(name, fr, LB, rerank=0, qe=0, vec=None, frr=None, lam=0.0):
    """Label precision@10 of the asked clips against each other (themselves left out), exact cosine on `vec`
    (default: the mean of the frames `fr`), the top `rerank` re-ranked by Chamfer on `frr` (default `fr`)
    plus `lam` x the cosine, after query expansion with the `qe` nearest."""
    V = normed(fr.mean(1) if vec is None else vec)
    S = V @ V.T; np.fill_diagonal(S, -9)
    if qe:
        t = topk(S, qe); Q = normed(V + V[t].sum(1) * 0.5)
        S = Q @ V.T; np.fill_diagonal(S, -9)
    T = topk(S, max(10, rerank))
    if rerank:
        Fn = normed(fr if frr is None else frr)
        T = np.array([c[np.argsort(-(chamfer(Fn[q], Fn[c]) + lam * S[q, c]), kind='stable')]
                      for q, c in enumerate(T)])
    p, n = precision(T, LB, LB)
    print(f'{name:50s} rerank {rerank:3d} qe {qe} P@10 {p:.4f}', flush=True)
    return p

def fit_logistic(X, LX, C, minsup=1):
    """One-vs-rest logistic regressions (scikit-learn, lbfgs) on standardised X: weights and biases on X's
    own scale, so that sigmoid(x @ W + b) are the label probabilities."""
    from sklearn.linear_model import LogisticRegression
    classes = sorted({l for ls in LX for l in ls})
    Y = np.array([[c in ls for c in classes] for ls in LX]).astype(int)
    Y = Y[:, Y.sum(0) >= minsup]
    m = X.mean(0); s = X.std(0)
    W, b = [], []
    for j in range(Y.shape[1]):
        lr = LogisticRegression(C=C, max_iter=500).fit((X - m) / s, Y[:, j])
        W.append(lr.coef_[0] / s); b.append(lr.intercept_[0] - (lr.coef_[0] / s) @ m)
    return np.array(W).T, np.array(b)
