//! Constrained replies. JSON mode (OpenAI's `response_format: {"type":
//! "json_object"}`, Ollama's `format: "json"`): the reply is constrained,
//! token by token, to a prefix of one JSON object, and ends when that object
//! closes; likewise for a JSON schema and for a GBNF grammar
//! ([`super::grammar`]), which may also end wherever the grammar is complete.
//! A [`Trigger`] (`trigger.rs`) leaves the reply free but for what follows
//! a text (tool calls; the answer after `</think>`).
//!
//! [`JsonState`] (`object.rs`) recognizes any JSON object; [`SchemaState`]
//! (`schema.rs`) one that follows a JSON schema. The sampler draws as usual
//! and only when the drawn token does not fit are all the candidates checked
//! (llama.cpp's order too).

/// What a reply must be.
#[derive(Clone, Debug, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    /// One JSON object, and nothing after it.
    JsonObject,
    /// One JSON object that follows the schema.
    JsonSchema(Arc<Schema>),
    /// A string of the GBNF grammar.
    Grammar(Arc<Grammar>),
    /// Free text, except that what follows a trigger text follows a
    /// format (tool calls in `<tool_call>` blocks; a reply's format after
    /// its reasoning).
    Triggered(Arc<Trigger>),
}

impl OutputFormat {
    pub fn is_text(&self) -> bool {
        matches!(self, OutputFormat::Text)
    }

    /// The constraint a reply in this format starts with (`None` for text).
    pub fn constraint(&self) -> Option<JsonConstraint> {
        match self {
            OutputFormat::Text => None,
            OutputFormat::JsonObject => Some(JsonConstraint {
                state: Recognizer::Object(JsonState::new()),
            }),
            OutputFormat::JsonSchema(s) => Some(JsonConstraint {
                state: Recognizer::Schema(s.clone(), SchemaState::new(s)),
            }),
            OutputFormat::Grammar(g) => Some(JsonConstraint {
                state: Recognizer::Grammar(GrammarState::new(g)),
            }),
            OutputFormat::Triggered(t) => Some(JsonConstraint {
                state: Recognizer::Triggered(t.clone(), TriggerState::new()),
            }),
        }
    }
}

mod bounds;
mod lex;
mod object;
mod schema;
mod shape;
mod trigger;

/// Deepest nesting of objects and arrays accepted.
pub const MAX_DEPTH: u8 = 64;
/// Longest run of whitespace between two tokens: small models in JSON mode
/// otherwise fall into emitting newlines forever (llama.cpp's JSON grammar
/// bounds it the same way).
pub const MAX_WHITESPACE: u8 = 24;

pub use object::JsonState;
pub use schema::{Schema, SchemaState};
pub use trigger::{Trigger, TriggerState};

use std::sync::Arc;

use super::grammar::{Grammar, GrammarState};
use crate::tokenizer::Tokenizer;

#[derive(Clone, Debug)]
enum Recognizer {
    Object(JsonState),
    Schema(Arc<Schema>, SchemaState),
    Grammar(GrammarState),
    Triggered(Arc<Trigger>, TriggerState),
}

impl Recognizer {
    fn after(&self, bytes: &[u8]) -> Option<Recognizer> {
        match self {
            Recognizer::Object(j) => j.after(bytes).map(Recognizer::Object),
            Recognizer::Schema(s, st) => {
                st.after(s, bytes).map(|n| Recognizer::Schema(s.clone(), n))
            }
            Recognizer::Grammar(g) => g.after(bytes).map(Recognizer::Grammar),
            Recognizer::Triggered(t, st) => st
                .after(t, bytes)
                .map(|n| Recognizer::Triggered(t.clone(), n)),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Recognizer::Object(j) => j.is_done(),
            Recognizer::Schema(_, st) => st.is_done(),
            Recognizer::Grammar(g) => g.is_done(),
            // Free text ends when the model ends it; a reply bound once
            // ends with its value.
            Recognizer::Triggered(t, st) => t.is_once() && st.value_is_done(),
        }
    }

    /// An end-of-generation token may come now: a grammar that is complete
    /// but could go on (`[a-z]+`) lets the model choose. A JSON reply ends
    /// by itself when its object closes.
    fn may_end(&self) -> bool {
        match self {
            Recognizer::Grammar(g) => g.is_accepting(),
            Recognizer::Triggered(t, st) if st.is_free() => !t.is_once(),
            Recognizer::Triggered(_, st) => st.value_may_end(),
            _ => false,
        }
    }

    /// Free text may hold control tokens, as unconstrained text does.
    fn passes_control(&self) -> bool {
        matches!(self, Recognizer::Triggered(_, st) if st.is_free())
    }

    /// Inside an exact text of a schema (an enum's, Mistral's
    /// `name[ARGS]`) on every reading: a control token whose text
    /// continues it is that text (Mistral's `[ARGS]` is a token of its
    /// own). Not in strings, where a control token would smuggle in a
    /// special token the template never meant.
    fn in_literal(&self) -> bool {
        match self {
            Recognizer::Schema(_, st) => st.in_literal(),
            Recognizer::Triggered(_, TriggerState::Inside { value, .. }) => {
                value.state.in_literal()
            }
            _ => false,
        }
    }
}

/// JSON mode for one reply: draws tokens that keep it a prefix of what the
/// format allows.
#[derive(Clone, Debug)]
pub struct JsonConstraint {
    state: Recognizer,
}

impl JsonConstraint {
    /// The reply's object has closed: the reply ends here.
    pub fn is_done(&self) -> bool {
        self.state.is_done()
    }

    /// Whether token `id` may come next (one check, without drawing).
    pub fn fits(&self, tok: &Tokenizer, id: u32) -> bool {
        if tok.is_end_of_generation(id) {
            return self.state.may_end();
        }
        after_token(tok, &self.state, id).is_some()
    }

    /// Whether token `id` can continue the reply (end of generation aside),
    /// for each candidate in turn. Each first byte is tried once, and only
    /// the tokens whose first byte fits are checked further, each in one
    /// call: best for `JsonState`, whose checks are a few instructions a
    /// byte (`cargo bench --bench json_constraint`: 1.7 ms a refusal, 2.6
    /// ms by the trie).
    fn fits_by_first_byte<'s>(&'s self, tok: &'s Tokenizer) -> impl FnMut(u32) -> bool + 's {
        let mut by_first: Vec<Option<Option<Recognizer>>> = vec![None; 256];
        move |id| {
            if tok.is_control(id) {
                return false;
            }
            let Some((&b, rest)) = tok.token_bytes(id).split_first() else {
                return false;
            };
            match by_first[b as usize].get_or_insert_with(|| self.state.after(&[b])) {
                Some(st) => rest.is_empty() || st.after(rest).is_some(),
                None => false,
            }
        }
    }

    /// The vocabulary walked as a trie, in the byte order of its tokens:
    /// each prefix is checked once for all the tokens that share it, and a
    /// prefix that fails rules out all of them. Best where a byte costs
    /// more (schema parses, grammar stacks: 4.4 -> 3.9 and 18.0 -> 8.7 ms a
    /// refusal).
    fn fitting_by_trie(&self, tok: &Tokenizer) -> Vec<bool> {
        let mut fits = vec![false; tok.vocab_size()];
        // states[d]: the state after the first d bytes of the last token
        // walked (None: those bytes cannot continue the reply).
        let mut states: Vec<Option<Recognizer>> = vec![Some(self.state.clone())];
        let mut prev: &[u8] = &[];
        for &id in tok.text_ids_by_bytes() {
            let bytes = tok.token_bytes(id);
            let common = prev
                .iter()
                .zip(bytes)
                .take_while(|(a, b)| a == b)
                .count()
                .min(states.len() - 1);
            states.truncate(common + 1);
            while states.len() <= bytes.len() {
                let d = states.len();
                let next = match &states[d - 1] {
                    Some(st) => st.after(&bytes[d - 1..d]),
                    None => None,
                };
                let dead = next.is_none();
                states.push(next);
                if dead {
                    break;
                }
            }
            fits[id as usize] = states.len() == bytes.len() + 1 && states[bytes.len()].is_some();
            prev = bytes;
        }
        fits
    }

    /// Draws the next token from `cand` with `draw` (greedy or the
    /// request's sampler). A token that cannot continue the JSON is refused
    /// and the draw repeated among the candidates that can: llama.cpp's
    /// order, so the full check runs only on a refusal.
    pub fn choose(
        &mut self,
        tok: &Tokenizer,
        cand: Vec<(u32, f32)>,
        mut draw: impl FnMut(Vec<(u32, f32)>) -> u32,
    ) -> anyhow::Result<u32> {
        let first = draw(cand.clone());
        if tok.is_end_of_generation(first) && self.state.may_end() {
            return Ok(first);
        }
        if let Some(next) = after_token(tok, &self.state, first) {
            self.state = next;
            return Ok(first);
        }
        let mut fits: Box<dyn FnMut(u32) -> bool> = match self.state {
            Recognizer::Object(_) => Box::new(self.fits_by_first_byte(tok)),
            _ => {
                let by_id = self.fitting_by_trie(tok);
                Box::new(move |id| by_id.get(id as usize).copied().unwrap_or(false))
            }
        };
        let may_end = self.state.may_end();
        let allowed: Vec<(u32, f32)> = cand
            .into_iter()
            .filter(|&(id, _)| {
                if tok.is_end_of_generation(id) {
                    return may_end;
                }
                if tok.is_control(id) {
                    // Not among the trie's text tokens: a trigger's or a
                    // literal's own token is checked alone.
                    return after_token(tok, &self.state, id).is_some();
                }
                fits(id)
            })
            .collect();
        drop(fits);
        if allowed.is_empty() {
            anyhow::bail!("constrained output: no candidate token continues the reply");
        }
        let id = draw(allowed);
        if !tok.is_end_of_generation(id) {
            self.state = after_token(tok, &self.state, id).expect("drawn from the allowed tokens");
        }
        Ok(id)
    }
}

/// The state after token `id`, if it can continue the reply: end of
/// generation and control tokens cannot (the reply ends by closing its
/// object), nor tokens that print nothing.
fn after_token(tok: &Tokenizer, state: &Recognizer, id: u32) -> Option<Recognizer> {
    if tok.is_end_of_generation(id) {
        return None;
    }
    if tok.is_control(id) {
        return match state {
            // A trigger may be a control token of its own (Mistral's
            // `[TOOL_CALLS]`): free text matches its text too.
            Recognizer::Triggered(t, st) if st.is_free() => st
                .after(t, tok.token_bytes(id))
                .map(|n| Recognizer::Triggered(t.clone(), n)),
            _ if state.passes_control() => Some(state.clone()),
            _ if state.in_literal() => state.after(tok.token_bytes(id)),
            _ => None,
        };
    }
    match tok.token_bytes(id) {
        [] => None,
        bytes => state.after(bytes),
    }
}
