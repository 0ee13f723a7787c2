//! Perplexity as llama.cpp's `llama-perplexity` computes it, so numbers can be
//! compared with it: fixed chunks of `n_ctx` tokens, each evaluated from an
//! empty cache, scoring only the second half of each chunk (the first half
//! gives every scored token at least `n_ctx / 2` tokens of context).

/// Negative log-likelihood of `target` under `logits`: `-log softmax(logits)[target]`,
/// in f64 so that a 50k-entry sum does not lose the small probabilities.
/// NaN for a `target` outside `logits` (callers check token ids first; see
/// [`check_token_ids`]).
pub fn token_nll(logits: &[f32], target: u32) -> f64 {
    let Some(&logit) = logits.get(target as usize) else {
        return f64::NAN;
    };
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let log_z = max + sum.ln();
    log_z - logit as f64
}

/// Every token id must have a logit: a vocabulary larger than the model's
/// output would otherwise index past the logits.
pub fn check_token_ids(tokens: &[u32], n_vocab: usize) -> Result<(), String> {
    match tokens.iter().position(|&t| t as usize >= n_vocab) {
        Some(i) => Err(format!(
            "token {i} of the text has id {}, outside the model's {n_vocab} logits",
            tokens[i]
        )),
        None => Ok(()),
    }
}

/// NLLs of one chunk: `logits[i]` are the logits after `tokens[i]`; positions
/// `tokens.len() / 2 .. tokens.len() - 1` are scored against the following
/// token, as llama.cpp does. `logits` may hold every position or only those
/// from `tokens.len() / 2` on (the first half is never read).
pub fn chunk_nll(logits: &[Vec<f32>], tokens: &[u32]) -> Vec<f64> {
    let n = tokens.len();
    let first = n / 2;
    // Accept both the full set of logits and only the scored half.
    let offset = if logits.len() == n { 0 } else { first };
    assert!(
        logits.len() + offset >= n.saturating_sub(1),
        "chunk_nll: {} logits for a chunk of {n} tokens",
        logits.len()
    );
    (first..n.saturating_sub(1))
        .map(|i| token_nll(&logits[i - offset], tokens[i + 1]))
        .collect()
}

/// Splits `tokens` into `n_ctx`-token chunks (a partial tail is dropped), at
/// most `max_chunks` of them; when `bos` is given, each chunk's first token is
/// replaced by it, as llama.cpp does for vocabularies that add BOS.
pub fn chunks(
    tokens: &[u32],
    n_ctx: usize,
    max_chunks: Option<usize>,
    bos: Option<u32>,
) -> Vec<Vec<u32>> {
    let n = (tokens.len() / n_ctx).min(max_chunks.unwrap_or(usize::MAX));
    (0..n)
        .map(|c| {
            let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
            if let Some(b) = bos {
                chunk[0] = b;
            }
            chunk
        })
        .collect()
}

/// Running sums of NLL for the estimate and its standard error.
#[derive(Clone, Debug, Default)]
pub struct PerplexityStats {
    pub count: usize,
    sum: f64,
    sum_sq: f64,
}

impl PerplexityStats {
    pub fn add(&mut self, nll: f64) {
        self.count += 1;
        self.sum += nll;
        self.sum_sq += nll * nll;
    }

    pub fn mean_nll(&self) -> f64 {
        self.sum / self.count as f64
    }

    pub fn ppl(&self) -> f64 {
        self.mean_nll().exp()
    }

    /// llama.cpp's error bar: the standard error of the mean NLL,
    /// propagated to PPL by its derivative (`d exp(x) = exp(x) dx`).
    pub fn ppl_stderr(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        let mean = self.mean_nll();
        let var = self.sum_sq / n - mean * mean;
        if var <= 0.0 {
            return 0.0;
        }
        self.ppl() * (var / (n - 1.0)).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_logits_give_the_vocabulary_size() {
        let v = 1000;
        let tokens: Vec<u32> = (0..8).map(|i| i * 97 % v).collect();
        let logits = vec![vec![0.25f32; v as usize]; tokens.len()];
        let mut s = PerplexityStats::default();
        chunk_nll(&logits, &tokens)
            .into_iter()
            .for_each(|x| s.add(x));
        assert_eq!(s.count, 3); // positions 4, 5, 6 of 8
        assert!((s.ppl() - v as f64).abs() < 1e-6, "{}", s.ppl());
        assert_eq!(s.ppl_stderr(), 0.0);
    }

    #[test]
    fn nll_matches_a_hand_computed_softmax() {
        // softmax([ln 1, ln 3]) = [0.25, 0.75]
        let l = [0.0f32, 3f32.ln()];
        assert!((token_nll(&l, 1) - (4.0f64 / 3.0).ln()).abs() < 1e-6);
        assert!((token_nll(&l, 0) - 4f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn stderr_follows_the_sample_standard_deviation() {
        let mut s = PerplexityStats::default();
        [1.0, 2.0, 3.0].iter().for_each(|&x| s.add(x));
        // llama.cpp divides the population variance (2/3) by n - 1 (2).
        let expect = 2f64.exp() * (1.0f64 / 3.0).sqrt();
        assert!((s.ppl_stderr() - expect).abs() < 1e-9);
    }

    #[test]
    fn chunks_drop_the_tail_and_put_bos_first() {
        let t: Vec<u32> = (10..20).collect();
        assert_eq!(
            chunks(&t, 4, None, Some(1)),
            vec![vec![1, 11, 12, 13], vec![1, 15, 16, 17]]
        );
        assert_eq!(chunks(&t, 4, Some(1), None), vec![vec![10, 11, 12, 13]]);
    }
}
