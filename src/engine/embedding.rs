//! Embeddings: a text's hidden states after the model's final norm (what
//! the output projection would read), pooled into one vector per text, as
//! llama.cpp's `llama-embedding` and `llama-server --embeddings` compute
//! them; the server's OpenAI and Ollama embedding endpoints and the `embed`
//! command share this.

use anyhow::{bail, Result};
use serde::Serialize;

use super::Engine;
use crate::gguf::Gguf;
use crate::gpu::BatchOutput;

/// How a text's per-token hidden states become its embedding (llama.cpp's
/// `--pooling`; `rank` needs a reranker's classification head, which a
/// Llama model does not have).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// One vector per token (llama.cpp's `none`).
    None,
    /// The average over the text's tokens.
    Mean,
    /// The first token's (BERT's CLS).
    Cls,
    /// The last token's: in a causal model the only one that saw the whole text.
    Last,
}

impl Pooling {
    pub fn parse(s: &str) -> Result<Pooling> {
        Ok(match s {
            "none" => Pooling::None,
            "mean" => Pooling::Mean,
            "cls" => Pooling::Cls,
            "last" => Pooling::Last,
            "rank" => bail!(
                "--pooling rank needs a reranker's classification head, which Llama models do not have"
            ),
            other => bail!("--pooling must be none, mean, cls or last, got '{other}'"),
        })
    }

    /// The file's `llama.pooling_type` (0 none, 1 mean, 2 cls, 3 last, as
    /// llama.cpp's converter writes for embedding models); without one,
    /// `last`. llama.cpp falls back to `none`, which its OpenAI endpoint then
    /// refuses; Ollama, before it moved to llama-server, answered a
    /// generation model's embedding request with the last token's hidden
    /// state, which is what `last` gives.
    pub fn of_model(g: &Gguf) -> Result<Pooling> {
        let key = "llama.pooling_type";
        Ok(match g.opt_u64(key)? {
            None => Pooling::Last,
            Some(0) => Pooling::None,
            Some(1) => Pooling::Mean,
            Some(2) => Pooling::Cls,
            Some(3) => Pooling::Last,
            Some(4) => bail!("{key} is 4 (rank): a reranker, which this engine does not run"),
            Some(n) => bail!("{key} is {n}, not a pooling type (0..=3)"),
        })
    }

    /// What a prompt step must read back for this pooling: every row's
    /// hidden state, or only the last one's.
    pub fn batch_output(self) -> BatchOutput {
        match self {
            Pooling::Last => BatchOutput::LastHidden,
            _ => BatchOutput::AllHidden,
        }
    }
}

/// Accumulates the hidden rows of a text's prompt chunks, in order, into its
/// embedding.
#[derive(Clone, Debug)]
pub struct Pooler {
    pooling: Pooling,
    n_embd: usize,
    /// Mean: per-component sums (f64: a long text's sum keeps its low bits).
    sum: Vec<f64>,
    rows: usize,
    /// None: every row; Cls: the first; Last: the latest.
    kept: Vec<f32>,
}

impl Pooler {
    pub fn new(pooling: Pooling, n_embd: usize) -> Pooler {
        Pooler {
            pooling,
            n_embd,
            sum: vec![0.0; if pooling == Pooling::Mean { n_embd } else { 0 }],
            rows: 0,
            kept: Vec::new(),
        }
    }

    /// Takes a chunk's rows (`n_embd` floats each, in position order): all
    /// of them for `none`, `mean` and `cls`, the last one for `last`.
    pub fn add(&mut self, hidden: &[f32]) -> Result<()> {
        let n = self.n_embd;
        if hidden.is_empty() || hidden.len() % n != 0 {
            bail!("{} hidden values are not whole rows of {n}", hidden.len());
        }
        match self.pooling {
            Pooling::None => self.kept.extend_from_slice(hidden),
            Pooling::Mean => {
                for row in hidden.chunks_exact(n) {
                    for (s, &v) in self.sum.iter_mut().zip(row) {
                        *s += v as f64;
                    }
                }
            }
            Pooling::Cls => {
                if self.rows == 0 {
                    self.kept = hidden[..n].to_vec();
                }
            }
            Pooling::Last => self.kept = hidden[hidden.len() - n..].to_vec(),
        }
        self.rows += hidden.len() / n;
        Ok(())
    }

    /// The embedding (one vector, or one per token for `none`).
    pub fn finish(self) -> Result<Vec<Vec<f32>>> {
        if self.rows == 0 {
            bail!("no hidden states to pool (an empty text?)");
        }
        Ok(match self.pooling {
            Pooling::None => self
                .kept
                .chunks_exact(self.n_embd)
                .map(<[f32]>::to_vec)
                .collect(),
            Pooling::Mean => vec![self
                .sum
                .iter()
                .map(|&s| (s / self.rows as f64) as f32)
                .collect()],
            Pooling::Cls | Pooling::Last => vec![self.kept],
        })
    }
}

/// llama.cpp's `--embd-normalize`: -1 none, 0 max-absolute scaled to
/// 16-bit integers' range, 1 taxicab, 2 Euclidean (the default everywhere:
/// cosine similarity becomes a dot product), p > 2 the p-norm.
pub fn normalize(v: &[f32], norm: i32) -> Vec<f32> {
    let sum: f64 = match norm {
        n if n < 0 => 1.0,
        0 => v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs())) / 32760.0,
        2 => v
            .iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt(),
        p => v
            .iter()
            .map(|&x| (x as f64).abs().powi(p))
            .sum::<f64>()
            .powf(1.0 / p as f64),
    };
    let scale = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    v.iter().map(|&x| (x as f64 * scale) as f32).collect()
}

impl Engine {
    /// The embedding of `tokens` (a whole text, BOS included if the model
    /// adds one) on slot 0, which is reset first: the cache's previous
    /// contents are not reused (reused positions would come from other
    /// kernels, and the result would depend on what ran before).
    pub fn embed(&mut self, tokens: &[u32], pooling: Pooling) -> Result<Vec<Vec<f32>>> {
        if tokens.is_empty() {
            bail!("nothing to embed (the text has no tokens)");
        }
        if tokens.len() > self.model.n_ctx {
            bail!(
                "the text has {} tokens; the context holds {} (--ctx-size)",
                tokens.len(),
                self.model.n_ctx
            );
        }
        self.model.reset();
        let hidden = self
            .model
            .prefill(tokens, pooling.batch_output())?
            .into_hidden()?;
        self.model.reset();
        let mut p = Pooler::new(pooling, self.model.cfg.n_embd);
        p.add(&hidden)?;
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_over_chunks_equals_pooling_at_once() {
        let n = 3;
        let rows: Vec<f32> = (0..5 * n).map(|i| (i as f32 * 0.37).sin()).collect();
        for pooling in [Pooling::None, Pooling::Mean, Pooling::Cls] {
            let mut once = Pooler::new(pooling, n);
            once.add(&rows).unwrap();
            let mut split = Pooler::new(pooling, n);
            split.add(&rows[..2 * n]).unwrap();
            split.add(&rows[2 * n..]).unwrap();
            assert_eq!(once.clone().finish().unwrap(), split.finish().unwrap());
        }
        let mut p = Pooler::new(Pooling::Mean, n);
        p.add(&rows).unwrap();
        let mean = p.finish().unwrap();
        for c in 0..n {
            let want: f32 = (0..5).map(|r| rows[r * n + c]).sum::<f32>() / 5.0;
            assert!((mean[0][c] - want).abs() < 1e-6);
        }
        let mut p = Pooler::new(Pooling::Cls, n);
        p.add(&rows).unwrap();
        assert_eq!(p.finish().unwrap(), vec![rows[..n].to_vec()]);
        // `last` is given the last row of each chunk it reads.
        let mut p = Pooler::new(Pooling::Last, n);
        p.add(&rows[..n]).unwrap();
        p.add(&rows[4 * n..]).unwrap();
        assert_eq!(p.finish().unwrap(), vec![rows[4 * n..].to_vec()]);
        let mut p = Pooler::new(Pooling::None, n);
        p.add(&rows).unwrap();
        assert_eq!(p.finish().unwrap().len(), 5);
        assert!(Pooler::new(Pooling::Mean, n).add(&rows[..4]).is_err());
        assert!(Pooler::new(Pooling::Mean, n).finish().is_err());
    }

    #[test]
    fn normalizations_are_llama_cpps() {
        let v = [3.0f32, -4.0, 0.0];
        assert_eq!(normalize(&v, 2), vec![0.6, -0.8, 0.0]);
        assert_eq!(normalize(&v, -1), v.to_vec());
        let taxicab = normalize(&v, 1);
        assert!((taxicab[0] - 3.0 / 7.0).abs() < 1e-7 && (taxicab[1] + 4.0 / 7.0).abs() < 1e-7);
        let int16 = normalize(&v, 0);
        assert!((int16[1] + 32760.0).abs() < 1e-2 && (int16[0] - 24570.0).abs() < 1e-2);
        let p3 = normalize(&v, 3);
        let n3 = (27.0f64 + 64.0).powf(1.0 / 3.0) as f32;
        assert!((p3[0] - 3.0 / n3).abs() < 1e-6);
        assert_eq!(normalize(&[0.0, 0.0], 2), vec![0.0, 0.0]);
    }

    #[test]
    fn pooling_names() {
        assert_eq!(Pooling::parse("mean").unwrap(), Pooling::Mean);
        assert!(Pooling::parse("rank")
            .unwrap_err()
            .to_string()
            .contains("reranker"));
        assert!(Pooling::parse("avg")
            .unwrap_err()
            .to_string()
            .contains("'avg'"));
    }
}
