//! Token sampling on the CPU, with llama.cpp's parameters and order:
//! penalties (repetition, frequency, presence), top-k, top-p, min-p,
//! temperature, then a draw.
//!
//! The sampler works on candidates: all logits, or only the best n raw
//! logits when [`Sampler::candidates_needed`] says n is enough to give
//! exactly the same result; the engine then selects them on the GPU (top-k
//! kernel) and reads back n pairs instead of the vocabulary. Plain greedy
//! decoding runs entirely on the GPU (argmax kernel).

use rand::{Rng, SeedableRng};

#[derive(Clone, Debug)]
pub struct SamplerParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f32,
    /// 0.0 disables.
    pub min_p: f32,
    /// 1.0 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub repeat_last_n: usize,
    /// Subtracted from a logit once per occurrence in the window (OpenAI's
    /// `frequency_penalty`); 0.0 disables.
    pub frequency_penalty: f32,
    /// Subtracted from the logit of any token in the window (OpenAI's
    /// `presence_penalty`); 0.0 disables.
    pub presence_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerParams {
    /// llama.cpp's defaults.
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplerParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Whether any penalty changes a logit (llama.cpp skips the stage then).
    pub fn has_penalties(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.frequency_penalty != 0.0
                || self.presence_penalty != 0.0)
    }

    /// Whether the penalties can only lower logits: no candidate outside the
    /// raw best ones can then overtake them.
    fn penalties_only_lower(&self) -> bool {
        !self.has_penalties()
            || (self.repeat_penalty >= 1.0
                && self.frequency_penalty >= 0.0
                && self.presence_penalty >= 0.0)
    }
}

pub struct Sampler {
    pub params: SamplerParams,
    rng: rand::rngs::StdRng,
}

impl Sampler {
    pub fn new(params: SamplerParams) -> Sampler {
        let rng = rand::rngs::StdRng::seed_from_u64(params.seed);
        Sampler { params, rng }
    }

    /// The distinct tokens the penalties apply to, sorted, with how often
    /// each occurs in the last `repeat_last_n` tokens.
    fn penalized(&self, recent: &[u32]) -> Vec<(u32, usize)> {
        let p = &self.params;
        if !p.has_penalties() {
            return Vec::new();
        }
        let start = recent.len().saturating_sub(p.repeat_last_n);
        let mut seen: Vec<u32> = recent[start..].to_vec();
        seen.sort_unstable();
        let mut counts: Vec<(u32, usize)> = Vec::new();
        for id in seen {
            match counts.last_mut() {
                Some((last, n)) if *last == id => *n += 1,
                _ => counts.push((id, 1)),
            }
        }
        counts
    }

    /// How many of the best raw logits (by value, then lower id) this sampler
    /// must see to decide exactly as it would on all of them; `None` when it
    /// needs all (no top-k, or a penalty that raises logits: a repetition
    /// penalty under 1, a negative frequency or presence penalty).
    ///
    /// Why k + P suffices, P being the number of penalized tokens: penalties
    /// that only lower logits, so a token outside the raw top k + P has k + P
    /// tokens ahead of it, of which at least k are unpenalized and stay ahead:
    /// it cannot reach the penalized top k. Top-p and min-p then act on the
    /// top k only, as in llama.cpp's chain.
    pub fn candidates_needed(&self, recent: &[u32]) -> Option<usize> {
        let p = &self.params;
        let k = if p.temperature <= 0.0 {
            1
        } else if p.top_k > 0 {
            p.top_k
        } else {
            return None;
        };
        if !p.penalties_only_lower() {
            return None;
        }
        Some(k + self.penalized(recent).len())
    }

    /// The candidates that survive filtering, with their probabilities (sorted, best first).
    pub fn distribution(&self, logits: &[f32], recent: &[u32]) -> Vec<(u32, f32)> {
        let all = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        self.distribution_of(all, recent)
    }

    /// As [`Self::distribution`], from `(id, raw logit)` candidates: all
    /// logits, or at least the best [`Self::candidates_needed`] of them.
    pub fn distribution_of(&self, mut cand: Vec<(u32, f32)>, recent: &[u32]) -> Vec<(u32, f32)> {
        let p = &self.params;
        // Penalties as llama.cpp's `penalties` sampler: the repetition
        // penalty (CTRL paper) shrinks the logit of recently seen tokens
        // towards "less likely", then OpenAI's frequency and presence
        // penalties subtract count x frequency + presence.
        let seen = self.penalized(recent);
        if !seen.is_empty() {
            for (id, l) in cand.iter_mut() {
                if let Ok(i) = seen.binary_search_by_key(id, |&(t, _)| t) {
                    let count = seen[i].1 as f32;
                    *l = if *l > 0.0 {
                        *l / p.repeat_penalty
                    } else {
                        *l * p.repeat_penalty
                    };
                    *l -= count * p.frequency_penalty + p.presence_penalty;
                }
            }
        }
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.temperature <= 0.0 {
            return vec![(cand[0].0, 1.0)];
        }
        if p.top_k > 0 && p.top_k < cand.len() {
            cand.truncate(p.top_k);
        }
        let probs = |c: &[(u32, f32)], t: f32| -> Vec<f32> {
            let max = c[0].1;
            let e: Vec<f32> = c.iter().map(|&(_, l)| ((l - max) / t).exp()).collect();
            let sum: f32 = e.iter().sum();
            e.iter().map(|v| v / sum).collect()
        };
        // top-p and min-p act on the distribution before temperature, as llama.cpp's default chain.
        let pr = probs(&cand, 1.0);
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = cand.len();
            for (i, &q) in pr.iter().enumerate() {
                acc += q;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep);
        }
        if p.min_p > 0.0 {
            let threshold = pr[0] * p.min_p;
            let keep = pr
                .iter()
                .take(cand.len())
                .take_while(|&&q| q >= threshold)
                .count()
                .max(1);
            cand.truncate(keep);
        }
        let pr = probs(&cand, p.temperature);
        cand.iter().zip(pr).map(|(&(id, _), q)| (id, q)).collect()
    }

    /// Draws the next token.
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        let dist = self.distribution(logits, recent);
        self.draw(&dist)
    }

    /// Draws the next token from candidates (see [`Self::distribution_of`]).
    pub fn sample_from(&mut self, cand: Vec<(u32, f32)>, recent: &[u32]) -> u32 {
        let dist = self.distribution_of(cand, recent);
        self.draw(&dist)
    }

    fn draw(&mut self, dist: &[(u32, f32)]) -> u32 {
        let mut r: f32 = self.rng.random();
        for &(id, q) in dist {
            if r < q {
                return id;
            }
            r -= q;
        }
        dist.last().expect("at least one candidate").0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SamplerParams {
        SamplerParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 1,
        }
    }

    const LOGITS: [f32; 5] = [2.0, 1.0, 0.0, -1.0, 3.0];

    fn ids(d: &[(u32, f32)]) -> Vec<u32> {
        d.iter().map(|x| x.0).collect()
    }

    #[test]
    fn full_distribution_is_the_softmax() {
        let d = Sampler::new(params()).distribution(&LOGITS, &[]);
        assert_eq!(ids(&d), vec![4, 0, 1, 2, 3]);
        let z: f32 = LOGITS.iter().map(|l| l.exp()).sum();
        for (id, q) in d {
            assert!((q - LOGITS[id as usize].exp() / z).abs() < 1e-6);
        }
    }

    #[test]
    fn greedy_keeps_only_the_best() {
        let s = Sampler::new(SamplerParams {
            temperature: 0.0,
            ..params()
        });
        assert_eq!(s.distribution(&LOGITS, &[]), vec![(4, 1.0)]);
    }

    #[test]
    fn top_k_keeps_k() {
        let s = Sampler::new(SamplerParams {
            top_k: 2,
            ..params()
        });
        assert_eq!(ids(&s.distribution(&LOGITS, &[])), vec![4, 0]);
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // softmax: 0.636, 0.234, 0.086, ...: 0.8 needs the first two.
        let s = Sampler::new(SamplerParams {
            top_p: 0.8,
            ..params()
        });
        assert_eq!(ids(&s.distribution(&LOGITS, &[])), vec![4, 0]);
        let s = Sampler::new(SamplerParams {
            top_p: 0.5,
            ..params()
        });
        assert_eq!(ids(&s.distribution(&LOGITS, &[])), vec![4]);
    }

    #[test]
    fn min_p_drops_tokens_below_a_fraction_of_the_best() {
        // p(best) = 0.636; 0.2 x that = 0.127 keeps 0.636 and 0.234 only.
        let s = Sampler::new(SamplerParams {
            min_p: 0.2,
            ..params()
        });
        assert_eq!(ids(&s.distribution(&LOGITS, &[])), vec![4, 0]);
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let p = |t: f32| {
            Sampler::new(SamplerParams {
                temperature: t,
                ..params()
            })
            .distribution(&LOGITS, &[])[0]
                .1
        };
        assert!(p(0.5) > p(1.0));
        assert!(p(2.0) < p(1.0));
    }

    #[test]
    fn repeat_penalty_lowers_recent_tokens() {
        let s = Sampler::new(SamplerParams {
            repeat_penalty: 4.0,
            ..params()
        });
        // Token 4 (logit 3) seen: 3 / 4 = 0.75 < token 0's 2.0.
        assert_eq!(s.distribution(&LOGITS, &[4])[0].0, 0);
        // Negative logits are pushed further down: token 3 stays last.
        assert_eq!(s.distribution(&LOGITS, &[3]).last().unwrap().0, 3);
        // Outside the window: no effect.
        let s = Sampler::new(SamplerParams {
            repeat_penalty: 4.0,
            repeat_last_n: 1,
            ..params()
        });
        assert_eq!(s.distribution(&LOGITS, &[4, 1])[0].0, 4);
    }

    /// The GPU top-k path: from only the best `candidates_needed` raw
    /// logits the sampler gives exactly the distribution it gives from all,
    /// penalty included, over random logits with ties, penalties and windows.
    #[test]
    fn best_candidates_give_the_same_distribution_as_all_logits() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for trial in 0..400 {
            let n = rng.random_range(2..300);
            // Coarse values so that ties are common.
            let logits: Vec<f32> = (0..n)
                .map(|_| (rng.random_range(-20i32..20) as f32) * 0.5)
                .collect();
            let recent: Vec<u32> = (0..rng.random_range(0..80))
                .map(|_| rng.random_range(0..n as u32))
                .collect();
            let s = Sampler::new(SamplerParams {
                temperature: [0.0, 0.3, 1.0, 2.0][trial % 4],
                top_k: rng.random_range(1..50),
                top_p: [1.0, 0.9, 0.5][trial % 3],
                min_p: [0.0, 0.05, 0.2][trial % 3],
                repeat_penalty: [1.0, 1.1, 1.5, 3.0][trial % 4],
                repeat_last_n: rng.random_range(0..70),
                frequency_penalty: [0.0, 0.5, 1.5][trial % 3],
                presence_penalty: [0.0, 0.7, 0.0, 2.0, 0.3][trial % 5],
                seed: 0,
            });
            let need = s
                .candidates_needed(&recent)
                .expect("top-k with a penalty >= 1");
            let cand = crate::engine::top_k_logits(&logits, need);
            assert_eq!(
                s.distribution_of(cand, &recent),
                s.distribution(&logits, &recent),
                "trial {trial}: n {n}, need {need}"
            );
        }
        // Samplers that must see everything say so.
        let no_top_k = Sampler::new(SamplerParams {
            top_k: 0,
            ..params()
        });
        assert_eq!(no_top_k.candidates_needed(&[]), None);
        let boost = Sampler::new(SamplerParams {
            repeat_penalty: 0.8,
            ..params()
        });
        assert_eq!(boost.candidates_needed(&[]), None);
        for (frequency_penalty, presence_penalty) in [(-0.5, 0.0), (0.0, -0.1), (1.0, -2.0)] {
            let raise = Sampler::new(SamplerParams {
                top_k: 40,
                frequency_penalty,
                presence_penalty,
                ..params()
            });
            assert_eq!(raise.candidates_needed(&[3]), None);
        }
        // A penalty with an empty window changes nothing: top-k alone.
        let no_window = Sampler::new(SamplerParams {
            top_k: 5,
            presence_penalty: -1.0,
            repeat_last_n: 0,
            ..params()
        });
        assert_eq!(no_window.candidates_needed(&[1, 2]), Some(5));
        let greedy = Sampler::new(SamplerParams {
            temperature: 0.0,
            repeat_penalty: 1.2,
            ..params()
        });
        assert_eq!(greedy.candidates_needed(&[5, 5, 7]), Some(3));
    }

    /// llama.cpp: logit -= count x frequency_penalty + presence_penalty, for
    /// tokens in the window, after the repetition penalty.
    #[test]
    fn frequency_and_presence_penalties_subtract_per_count_and_once() {
        let s = Sampler::new(SamplerParams {
            temperature: 0.0,
            frequency_penalty: 0.4,
            presence_penalty: 0.5,
            ..params()
        });
        // Token 4 (logit 3) seen twice: 3 - 2 x 0.4 - 0.5 = 1.7 < token 0's 2.0.
        assert_eq!(s.distribution(&LOGITS, &[4, 4])[0].0, 0);
        // Seen once: 3 - 0.4 - 0.5 = 2.1, still ahead.
        assert_eq!(s.distribution(&LOGITS, &[4])[0].0, 4);
        let s = Sampler::new(SamplerParams {
            temperature: 1.0,
            frequency_penalty: 0.6,
            presence_penalty: 0.3,
            ..params()
        });
        // Exact values through the softmax: the penalised logits are
        // [2, 1, 0, -1, 3 - 2 x 0.6 - 0.3 = 1.5].
        let pen = [2.0f32, 1.0, 0.0, -1.0, 1.5];
        let z: f32 = pen.iter().map(|l| l.exp()).sum();
        let d = s.distribution(&LOGITS, &[4, 4]);
        assert_eq!(ids(&d), vec![0, 4, 1, 2, 3]);
        for (id, q) in d {
            assert!((q - pen[id as usize].exp() / z).abs() < 1e-6, "token {id}");
        }
        // Combined with the repetition penalty, which applies first: 3 / 2 - 0.3 - 0.6 = 0.6.
        let s = Sampler::new(SamplerParams {
            repeat_penalty: 2.0,
            frequency_penalty: 0.6,
            presence_penalty: 0.3,
            ..params()
        });
        let d = s.distribution(&LOGITS, &[4]);
        let pen = [2.0f32, 1.0, 0.0, -1.0, 0.6];
        let z: f32 = pen.iter().map(|l| l.exp()).sum();
        for (id, q) in d {
            assert!((q - pen[id as usize].exp() / z).abs() < 1e-6, "token {id}");
        }
        // A negative presence penalty raises a token: -1 + 5 = 4 becomes the best.
        let s = Sampler::new(SamplerParams {
            temperature: 0.0,
            presence_penalty: -5.0,
            ..params()
        });
        assert_eq!(s.distribution(&LOGITS, &[3])[0].0, 3);
        // Outside the window: no effect.
        let s = Sampler::new(SamplerParams {
            temperature: 0.0,
            presence_penalty: 5.0,
            repeat_last_n: 1,
            ..params()
        });
        assert_eq!(s.distribution(&LOGITS, &[4, 1])[0].0, 4);
    }

    #[test]
    fn same_seed_same_draws_and_frequencies_follow_probabilities() {
        let draws = |seed| {
            let mut s = Sampler::new(SamplerParams { seed, ..params() });
            (0..2000)
                .map(|_| s.sample(&LOGITS, &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        let d = draws(7);
        let freq = d.iter().filter(|&&t| t == 4).count() as f32 / d.len() as f32;
        assert!(
            (freq - 0.636).abs() < 0.04,
            "frequency of the best token {freq}"
        );
    }
}
