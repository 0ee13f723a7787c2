//! What to tell a user whose model does not fit the memory they have: the
//! largest context, and the quantized cache types, that would.

use crate::gpu::kernels::CacheTypes;
use crate::quant::TensorType;

/// A size as people read it: GiB, or MiB under one GiB.
fn size(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / 1073741824.0)
    } else {
        format!("{:.1} MiB", b as f64 / 1048576.0)
    }
}

/// The largest context (positions per slot) whose whole need fits `budget`,
/// or `None` when not even one position does.
fn largest_context(
    need: &dyn Fn(usize, CacheTypes) -> u64,
    cache: CacheTypes,
    budget: u64,
    upto: usize,
) -> Option<usize> {
    let fits = |n: usize| need(n, cache) <= budget;
    if !fits(1) {
        return None;
    }
    // The need grows with the context: bisect.
    let (mut lo, mut hi) = (1usize, upto);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// The one-line refusal of a configuration that needs `total` bytes with
/// `budget` available, proposing a `-c` and cache types that fit; `need`
/// gives the whole need for a context size and cache types.
pub(super) fn refusal(
    need: &dyn Fn(usize, CacheTypes) -> u64,
    n_ctx: usize,
    n_slots: usize,
    cache: CacheTypes,
    quantizable: bool,
    budget: u64,
    total: u64,
) -> String {
    let mut msg = format!(
        "the model needs {} of GPU memory at -c {n_ctx} with {n_slots} slot(s) (K cache {}, V cache {}), more than the {} available (--gpu-memory)",
        size(total),
        cache.k.name().to_lowercase(),
        cache.v.name().to_lowercase(),
        size(budget)
    );
    let mut offers = Vec::new();
    if let Some(c) = largest_context(need, cache, budget, n_ctx) {
        offers.push(format!("-c {}", c.min(n_ctx)));
    }
    let q8 = CacheTypes {
        k: TensorType::Q8_0,
        v: TensorType::Q8_0,
    };
    if quantizable && cache != q8 {
        if need(n_ctx, q8) <= budget {
            offers.push(format!("-ctk q8_0 -ctv q8_0 (keeps -c {n_ctx})"));
        } else if let Some(c) = largest_context(need, q8, budget, n_ctx) {
            offers.push(format!("-ctk q8_0 -ctv q8_0 with -c {c}"));
        }
    }
    if offers.is_empty() {
        msg.push_str(": the weights alone do not fit; use a smaller quantization of the model");
    } else {
        msg.push_str(": use ");
        msg.push_str(&offers.join(", or "));
    }
    msg
}
