//! The KV cache's sequence slots: which are taken, and which tokens each
//! free slot still holds from its last request, so that a request starting
//! with the same tokens (the next turn of a conversation, a shared system
//! prompt) skips them: llama-server's `cache_prompt`.

/// What one slot holds.
#[derive(Clone, Debug, Default)]
struct Slot {
    used: bool,
    /// Token ids whose keys and values sit at positions `0..cached.len()`,
    /// exactly as a request feeding those ids from position 0 would put
    /// them there.
    cached: Vec<u32>,
    /// When the slot was last released (a counter); 0: never used.
    released: u64,
}

/// A slot given to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotGrant {
    pub slot: usize,
    /// Prompt tokens already in the slot: the request starts at this position.
    pub reused: usize,
}

#[derive(Clone, Debug)]
pub struct SlotTable {
    slots: Vec<Slot>,
    clock: u64,
}

/// Length of the common prefix of two id lists.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl SlotTable {
    pub fn new(n: usize) -> SlotTable {
        SlotTable {
            slots: vec![Slot::default(); n.max(1)],
            clock: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Claims a free slot for `prompt`. With `reuse`, the free slot whose
    /// cached tokens share the longest start with the prompt, if that start
    /// is at least half of what the slot holds (llama-server's
    /// `--slot-prompt-similarity` 0.5: a short match, such as a system
    /// prompt every conversation shares, does not evict another
    /// conversation); otherwise the free slot released longest ago. At least
    /// the prompt's last token is left to process: the step that feeds it
    /// gives the logits for the first reply token.
    pub fn claim(&mut self, prompt: &[u32], reuse: bool) -> Option<SlotGrant> {
        let free = || self.slots.iter().enumerate().filter(|(_, s)| !s.used);
        let similar = free()
            .map(|(i, s)| (i, common_prefix(&s.cached, prompt), s.cached.len()))
            .filter(|&(_, common, held)| reuse && common > 0 && 2 * common >= held)
            .max_by_key(|&(i, common, _)| (common, std::cmp::Reverse(i)))
            .map(|(i, _, _)| i);
        let slot = similar.or_else(|| free().min_by_key(|(_, s)| s.released).map(|(i, _)| i))?;
        let s = &mut self.slots[slot];
        s.used = true;
        let reused = if reuse {
            common_prefix(&s.cached, prompt).min(prompt.len().saturating_sub(1))
        } else {
            0
        };
        // Positions past the reused ones are about to be overwritten.
        s.cached.truncate(reused);
        Some(SlotGrant { slot, reused })
    }

    /// Frees `slot`, which now holds `cached` at positions `0..cached.len()`.
    pub fn release(&mut self, slot: usize, cached: Vec<u32>) {
        self.clock += 1;
        if let Some(s) = self.slots.get_mut(slot) {
            s.used = false;
            s.cached = cached;
            s.released = self.clock;
        }
    }

    /// Frees every slot and forgets what they hold (after a failed step,
    /// when no slot's contents can be trusted).
    pub fn reset(&mut self) {
        for s in &mut self.slots {
            *s = Slot::default();
        }
    }

    /// Tokens slot `slot` holds for reuse (empty while it is taken).
    pub fn cached(&self, slot: usize) -> &[u32] {
        self.slots.get(slot).map_or(&[], |s| &s.cached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_continued_conversation_returns_to_its_slot() {
        let mut t = SlotTable::new(3);
        let a = t.claim(&[1, 2, 3], true).unwrap();
        let b = t.claim(&[1, 7, 8], true).unwrap();
        assert_eq!((a.reused, b.reused), (0, 0));
        assert_ne!(a.slot, b.slot);
        t.release(a.slot, vec![1, 2, 3, 4, 5]);
        t.release(b.slot, vec![1, 7, 8, 9]);
        // The next turn of b's conversation: b's slot, with its cache.
        let c = t.claim(&[1, 7, 8, 9, 10, 11], true).unwrap();
        assert_eq!(
            c,
            SlotGrant {
                slot: b.slot,
                reused: 4
            }
        );
        // A new conversation sharing only BOS with a's: the empty slot,
        // not a's (1 of 5 tokens in common).
        let d = t.claim(&[1, 20], true).unwrap();
        assert_ne!(d.slot, a.slot);
        assert_eq!(d.reused, 0);
        // No free slot left but a's: taken as the oldest, keeping what it shares.
        let e = t.claim(&[1, 2, 30], true).unwrap();
        assert_eq!(
            e,
            SlotGrant {
                slot: a.slot,
                reused: 2
            }
        );
        assert_eq!(t.cached(a.slot), &[1, 2]);
        assert!(t.claim(&[1], true).is_none());
    }

    #[test]
    fn the_last_prompt_token_is_always_processed_and_reuse_can_be_off() {
        let mut t = SlotTable::new(1);
        let g = t.claim(&[5, 6, 7], true).unwrap();
        t.release(g.slot, vec![5, 6, 7, 8]);
        let g = t.claim(&[5, 6, 7], true).unwrap();
        assert_eq!(g.reused, 2);
        t.release(g.slot, vec![5, 6, 7, 8]);
        let g = t.claim(&[5, 6, 7], false).unwrap();
        assert_eq!(g.reused, 0);
        assert!(t.cached(g.slot).is_empty());
        t.release(g.slot, vec![5, 6]);
        t.reset();
        let g = t.claim(&[5, 6, 7], true).unwrap();
        assert_eq!(g.reused, 0);
    }
}
