//! RoPE frequencies for every scaling that GGUF and Hugging Face configs
//! describe: plain, linear, YaRN, NTK-aware "dynamic", and Llama 3.1's
//! per-pair frequency factors (`rope_freqs.weight`).
//!
//! Every variant is `angle = position x frequency[pair]` with a per-pair
//! frequency fixed at load (YaRN also scales the rotated values by an
//! attention factor), so the GPU keeps one cos/sin table and a context shift
//! re-rotates by the difference of two table entries. The formulas are
//! llama.cpp's (`ggml_rope_yarn`, `ggml_rope_yarn_corr_dims`) and
//! transformers' (`_compute_*_parameters` in `modeling_rope_utils`), which
//! agree; `tests/rope_scaling.rs` checks them against values recorded from
//! transformers.

use serde::Serialize;

use super::LlamaConfig;

/// How a model stretches RoPE beyond its training context (linear scaling is
/// [`LlamaConfig::rope_freq_scale`], with `None` here).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    None,
    /// YaRN: low-frequency pairs interpolated by `rope_freq_scale`,
    /// high-frequency pairs kept (extrapolated), a linear ramp between the
    /// correction dimensions of `beta_fast` and `beta_slow` rotations over
    /// the original context.
    Yarn {
        orig_ctx: usize,
        ext_factor: f32,
        /// Multiplies YaRN's own magnitude correction `1 + 0.1 ln(factor)`.
        attn_factor: f32,
        beta_fast: f32,
        beta_slow: f32,
    },
    /// NTK-aware base stretching for contexts past `orig_ctx`: the base is
    /// chosen for the context the model is loaded with (transformers'
    /// "dynamic" recomputes it as a sequence grows; here the cache is sized
    /// once, so it is computed once for that size).
    Dynamic {
        factor: f32,
        orig_ctx: usize,
    },
}

/// The per-pair frequencies of one model at one context size.
#[derive(Clone, Debug)]
pub struct Rope {
    /// Radians per position, per rotated pair.
    pub freq: Vec<f64>,
    /// Scale of rotated values (YaRN's magnitude correction; 1 otherwise).
    pub attn_factor: f32,
}

impl Rope {
    /// Frequencies for `cfg` with a KV cache of `n_ctx` positions.
    pub fn new(cfg: &LlamaConfig, n_ctx: usize) -> Rope {
        let d = cfg.rope_dim as f64;
        let pairs = cfg.rope_dim / 2;
        let mut base = cfg.rope_freq_base as f64;
        if let RopeScaling::Dynamic { factor, orig_ctx } = cfg.rope_scaling {
            if n_ctx > orig_ctx {
                let f = factor as f64;
                base *= (f * n_ctx as f64 / orig_ctx as f64 - (f - 1.0)).powf(d / (d - 2.0));
            }
        }
        let scale = cfg.rope_freq_scale as f64;
        let mut attn_factor = 1.0f32;
        let freq = (0..pairs)
            .map(|i| {
                let mut extrap = base.powf(-2.0 * i as f64 / d);
                if let Some(ff) = &cfg.rope_freq_factors {
                    extrap /= ff[i] as f64;
                }
                let interp = scale * extrap;
                match cfg.rope_scaling {
                    RopeScaling::Yarn {
                        orig_ctx,
                        ext_factor,
                        beta_fast,
                        beta_slow,
                        ..
                    } if ext_factor != 0.0 => {
                        let (lo, hi) = yarn_corr_dims(
                            cfg.rope_dim,
                            orig_ctx,
                            base,
                            beta_fast as f64,
                            beta_slow as f64,
                        );
                        let y = (i as f64 - lo) / (hi - lo).max(0.001);
                        let mix = (1.0 - y.clamp(0.0, 1.0)) * ext_factor as f64;
                        interp * (1.0 - mix) + extrap * mix
                    }
                    _ => interp,
                }
            })
            .collect();
        if let RopeScaling::Yarn {
            ext_factor,
            attn_factor: a,
            ..
        } = cfg.rope_scaling
        {
            attn_factor = a;
            if ext_factor != 0.0 {
                attn_factor *= (1.0 + 0.1 * (1.0 / scale).ln()) as f32;
            }
        }
        Rope { freq, attn_factor }
    }

    /// The rotation angle of pair `i` at position `pos`.
    pub fn angle(&self, pos: usize, i: usize) -> f32 {
        (pos as f64 * self.freq[i]) as f32
    }

    /// Rotates the leading `2 x freq.len()` values of one head, pairs
    /// adjacent `(x[2i], x[2i+1])` as in GGUF llama files.
    pub fn rotate(&self, head: &mut [f32], pos: usize) {
        for i in 0..self.freq.len() {
            let (sin, cos) = self.angle(pos, i).sin_cos();
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = (a * cos - b * sin) * self.attn_factor;
            head[2 * i + 1] = (a * sin + b * cos) * self.attn_factor;
        }
    }
}

impl Rope {
    /// Re-rotates a head rotated at position `old` to position `new` (a
    /// context shift), as the GPU does: the rotation by the difference of
    /// the two angles, composed from their cos/sin in f32.
    pub fn rerotate(&self, head: &mut [f32], old: usize, new: usize) {
        for i in 0..self.freq.len() {
            let (so, co) = self.angle(old, i).sin_cos();
            let (sn, cn) = self.angle(new, i).sin_cos();
            let (c, s) = (cn * co + sn * so, sn * co - cn * so);
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * c - b * s;
            head[2 * i + 1] = a * s + b * c;
        }
    }
}

/// The pair range over which YaRN ramps from extrapolation to
/// interpolation: the pairs that turn `beta_fast` and `beta_slow` times over
/// the original context (floor / ceil, clamped to the rotated pairs).
fn yarn_corr_dims(
    n_dims: usize,
    orig_ctx: usize,
    base: f64,
    beta_fast: f64,
    beta_slow: f64,
) -> (f64, f64) {
    let dim = |rot: f64| {
        n_dims as f64 * (orig_ctx as f64 / (rot * 2.0 * std::f64::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    (
        dim(beta_fast).floor().max(0.0),
        dim(beta_slow).ceil().min(n_dims as f64 - 1.0),
    )
}

/// Llama 3.1's frequency factors (what llama.cpp's converter writes as
/// `rope_freqs.weight`) from a Hugging Face `rope_type: llama3` config:
/// long wavelengths divided by `factor`, short ones kept, a smooth blend
/// between.
pub fn llama3_freq_factors(
    base: f64,
    rope_dim: usize,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    orig_ctx: usize,
) -> Vec<f32> {
    let old = orig_ctx as f64;
    let (low_wavelen, high_wavelen) = (old / low_freq_factor, old / high_freq_factor);
    (0..rope_dim / 2)
        .map(|i| {
            let freq = base.powf(-2.0 * i as f64 / rope_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor as f32
            } else {
                let smooth =
                    (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}
