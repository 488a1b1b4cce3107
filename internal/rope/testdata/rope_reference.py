#!/usr/bin/python3
"""Reference inverse frequencies for rope types dynamic and yarn, transcribed from Hugging Face transformers'
modeling_rope_utils.py (_compute_dynamic_ntk_parameters, _compute_yarn_parameters, 4.56 semantics) in float64.
Prints JSON that rope_test.go embeds. Run: /usr/bin/python3 rope_reference.py"""
import json
import math


def default(base, dim):
    return [1.0 / (base ** (i / dim)) for i in range(0, dim, 2)]


def dynamic(base, dim, mpe, factor, seq_len):
    seq_len = max(seq_len, mpe)
    base = base * ((factor * seq_len / mpe) - (factor - 1)) ** (dim / (dim - 2))
    return default(base, dim), 1.0


def yarn(base, dim, mpe, rs):
    factor = rs["factor"]
    attention_factor = rs.get("attention_factor")
    mscale = rs.get("mscale")
    mscale_all_dim = rs.get("mscale_all_dim")
    orig = rs.get("original_max_position_embeddings") or mpe

    def get_mscale(scale, mscale=1):
        if scale <= 1:
            return 1.0
        return 0.1 * mscale * math.log(scale) + 1.0

    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim))
        else:
            attention_factor = get_mscale(factor)
    beta_fast = rs.get("beta_fast") or 32
    beta_slow = rs.get("beta_slow") or 1

    def find_correction_dim(num_rotations):
        return (dim * math.log(orig / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

    truncate = rs.get("truncate", True)
    low, high = find_correction_dim(beta_fast), find_correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    pos_freqs = [base ** (i / dim) for i in range(0, dim, 2)]
    out = []
    for i, pf in enumerate(pos_freqs):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        ext_factor = 1 - ramp
        out.append((1.0 / (factor * pf)) * (1 - ext_factor) + (1.0 / pf) * ext_factor)
    return out, attention_factor


cases = {
    "dynamic_short": dynamic(10000.0, 16, 64, 2.0, 40),
    "dynamic_long": dynamic(10000.0, 16, 64, 2.0, 200),
    "yarn_qwen": yarn(1000000.0, 32, 131072, {"factor": 4.0, "original_max_position_embeddings": 32768}),
    "yarn_mscale": yarn(10000.0, 64, 4096, {"factor": 40.0, "mscale": 1.0, "mscale_all_dim": 0.707,
                                             "original_max_position_embeddings": 4096, "beta_fast": 32,
                                             "beta_slow": 1}),
    "yarn_no_truncate": yarn(500000.0, 16, 8192, {"factor": 8.0, "truncate": False, "attention_factor": 1.5}),
}
print(json.dumps({k: {"inv_freq": v[0], "scale": v[1]} for k, v in cases.items()}))
